import jax
import jax.numpy as jnp


def drift(ratio, advantage, progress):
    """PPO's clipped surrogate as a drift, the same at every progress value."""
    return jax.nn.relu((ratio - jnp.clip(ratio, 0.8, 1.2)) * advantage)
