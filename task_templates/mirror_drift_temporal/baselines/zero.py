import jax.numpy as jnp


def drift(ratio, advantage, progress):
    """No drift: the unconstrained importance-weighted surrogate."""
    return jnp.zeros_like(ratio * advantage)
