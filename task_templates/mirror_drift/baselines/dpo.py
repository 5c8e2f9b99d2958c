import jax.numpy as jnp


def drift(ratio, advantage):
    """Discovered Policy Optimisation (alpha = 2, beta = 0.6): cautious optimism and rollback."""
    alpha, beta = 2.0, 0.6
    positive = (ratio - 1.0) * advantage
    negative = jnp.log(ratio) * advantage
    return jnp.where(
        advantage >= 0,
        jnp.maximum(positive - alpha * jnp.tanh(positive / alpha), 0.0),
        jnp.maximum(negative - beta * jnp.tanh(negative / beta), 0.0),
    )
