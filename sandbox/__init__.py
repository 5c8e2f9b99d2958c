"""Candidate code and what runs it in isolation: both sides of the sandbox boundary.

Inside a sandbox (candidate code runs there): `stages` (the program the backends start),
`training/` (PPO with plug points), `pieces/` (the kinds of plug-in piece and their
conditions), `checks/`, `candidate` (restricted loading). On the trusted side, around it:
`cascade` (the evaluation cascade), `backends/` (process and Docker sandboxes) and `scorer`
(a separate process that never imports a candidate). Shared by both: `tasks`, `budgets`,
`fitness`, `artifacts` (what crosses the boundary), `landscape`, `vocabulary`.

Nothing here imports from the orchestration side (`scientist`, `archive`); the sandbox image
and the code snapshot ship this package alone.
"""

from sandbox import jax_setup as _jax_setup  # noqa: F401  (must run before jax is imported)
