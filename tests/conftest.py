import sandbox  # noqa: F401  (sets XLA flags before any test imports jax)
