import jax.numpy as jnp


def value_loss(prediction, target):
    """Half squared error, PPO's default."""
    return 0.5 * jnp.square(prediction - target)
