import jax
import jax.numpy as jnp


def drift(ratio, advantage, progress):
    """PPO whose clip range shrinks over training, 0.3 at the start to 0.1 at the end: a
    schedule of the kind TA-LPO discovered (a trust region that tightens as training goes)."""
    eps = 0.3 - 0.2 * progress
    return jax.nn.relu((ratio - jnp.clip(ratio, 1.0 - eps, 1.0 + eps)) * advantage)
