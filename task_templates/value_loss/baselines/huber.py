import jax.numpy as jnp


def value_loss(prediction, target):
    """Huber loss with delta = 1: quadratic near the target, linear far from it."""
    error = jnp.abs(prediction - target)
    return jnp.where(error <= 1.0, 0.5 * jnp.square(error), error - 0.5)
