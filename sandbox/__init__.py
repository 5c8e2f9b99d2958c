"""Everything that runs inside the sandbox: JAX training, candidate loading, checks, scoring.

Nothing here imports from the orchestration side (`scientist`, `archive`); the sandbox image
ships this package alone.
"""

from sandbox import jax_setup as _jax_setup  # noqa: F401  (must run before jax is imported)
