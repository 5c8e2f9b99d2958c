import jax.numpy as jnp


def drift(ratio, advantage):
    """PPO's clipped surrogate as a drift: zero inside the clip range."""
    clipped = jnp.clip(ratio, 0.8, 1.2)
    return jnp.maximum((ratio - clipped) * advantage, 0.0)
