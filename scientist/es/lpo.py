"""Evolution strategies' side of the LPO drift network (sandbox/training/lpo_network.py):
its initial weights and the slope its shifted ReLU must hide.

The network's output layer is 0 when PPO-initialised, so the starting drift is PPO's; from
scratch (`ppo_init=False`, the paper's LPO-Zero) it starts small and random instead (a zero
one would start exactly at the unconstrained surrogate, the `zero` baseline).
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.training.lpo_network import HIDDEN, NUM_FEATURES, LPOParams

SCRATCH_OUTPUT_STD = 0.01


def init_params(key: jax.Array, *, ppo_init: bool = True, hidden: int = HIDDEN) -> LPOParams:
    """Hidden layer ~ N(0, 1/8) (LeCun normal). The output layer is 0 when PPO-initialised, so
    the starting drift is PPO's; from scratch it is ~ N(0, 0.01^2): small enough that the
    starting drift passes the sandbox's slope check (the caveat in lpo_network.py; LeCun
    scale, 1/sqrt(128), would give slopes of about 5 at r = 1)."""
    hidden_key, output_key = jax.random.split(key)
    w_hidden = jax.random.normal(hidden_key, (NUM_FEATURES, hidden), jnp.float32) / np.sqrt(
        NUM_FEATURES
    )
    if ppo_init:
        w_output = jnp.zeros((hidden,), jnp.float32)
    else:
        w_output = SCRATCH_OUTPUT_STD * jax.random.normal(output_key, (hidden,), jnp.float32)
    return LPOParams(w_hidden, w_output)


def slope_at_one(params: LPOParams, advantage) -> np.ndarray:
    """d net / d r at r = 1 (tanh'(0) = 1): what the shifted ReLU's dead zone has to hide."""
    w, v = np.asarray(params.hidden, np.float64), np.asarray(params.output, np.float64)
    a = np.asarray(advantage, np.float64)[..., None]
    # d features / d r at r = 1: [-1, 0, -A, 0, 1, 0, A, 0]
    return ((-w[0] - a * w[2] + w[4] + a * w[6]) * v).sum(-1)
