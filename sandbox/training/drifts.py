"""Built-in Mirror Learning drift functions.

A valid drift is >= 0 everywhere, 0 at ratio 1, and has zero slope in the ratio at 1.
"""

import jax.numpy as jnp
from jax import nn

PPO_CLIP_EPS = 0.2
DPO_ALPHA = 2.0
DPO_BETA = 0.6


def ppo(ratio, advantage):
    """PPO's clipped surrogate written as a drift (DPO paper, eq. 6)."""
    clipped = jnp.clip(ratio, 1.0 - PPO_CLIP_EPS, 1.0 + PPO_CLIP_EPS)
    return nn.relu((ratio - clipped) * advantage)


def dpo(ratio, advantage):
    """Discovered Policy Optimisation (DPO paper, eq. 9): cautious optimism and rollback."""
    positive = (ratio - 1.0) * advantage
    negative = jnp.log(ratio) * advantage
    return jnp.where(
        advantage >= 0,
        nn.relu(positive - DPO_ALPHA * jnp.tanh(positive / DPO_ALPHA)),
        nn.relu(negative - DPO_BETA * jnp.tanh(negative / DPO_BETA)),
    )


def zero(ratio, advantage):
    """No drift: the unconstrained importance-weighted policy gradient."""
    return jnp.zeros_like(ratio * advantage)


BUILTIN = {"ppo": ppo, "dpo": dpo, "zero": zero}
