"""What runs inside a sandbox, and what both sides of its boundary share.

Inside (candidate code runs there): `stages` (the program the backends start), `training/`
(PPO with plug points), `pieces/` (the kinds of plug-in piece and their conditions),
`checks/`, `candidate` (restricted loading), `oneshot` (a one-off run's inputs and result).
Shared with the trusted side (`harness/`, which starts sandboxes and reads what they leave):
`tasks`, `budgets`, `fitness`, `artifacts` and `landscape` (what crosses the boundary, and
how it is validated), `expressions` and `formulas` (the GP genome), `vocabulary`.

Nothing here imports from the trusted side or the orchestration (`harness`, `scientist`,
`archive`); the sandbox image and the code snapshot ship this package alone.
"""

from sandbox import jax_setup as _jax_setup  # noqa: F401  (must run before jax is imported)
