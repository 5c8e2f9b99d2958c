"""The trainer's plug points: the places in PPO where a function can be swapped.

A discovery task fills one of them with candidate code; the trainer only sees this
dataclass. Each is a pure JAX function:

- drift(ratio, advantage) -> array, elementwise, a Mirror Learning drift. The policy loss is
  -mean(ratio * A - drift(ratio, A)), with A normalised per minibatch.
- value_loss(prediction, target) -> array, elementwise; the trainer averages it (and applies
  PPO's value clipping around it when the config asks for it).
- make_optimizer(learning_rate, max_grad_norm) -> optax.GradientTransformation, where
  learning_rate may be a float or an optax schedule.
- advantage(advantage) -> array, elementwise: a transform of the normalised minibatch
  advantages before the policy loss sees them (PPO: none).
- temporal_drift(ratio, advantage, progress) -> array, elementwise: a drift that also sees
  the training progress n/N of the current update (TA-LPO); where set, it replaces `drift`.

PPO's own choices are the defaults, written out in `ppo.py` (`Components`) so PPO reads top
to bottom in one file; each kind of piece's default baseline (sandbox/pieces, its task folder)
is the same function, which `tests/test_training.py` checks value for value.
"""

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # no JAX at import: task specs and plug points are read outside the sandbox too
    import jax.numpy as jnp
    import optax

    Drift = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    ValueLoss = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    OptimizerFactory = Callable[[float | optax.Schedule, float], optax.GradientTransformation]
    AdvantageTransform = Callable[[jnp.ndarray], jnp.ndarray]
    TemporalDrift = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]
else:
    Drift = ValueLoss = OptimizerFactory = AdvantageTransform = TemporalDrift = Callable[..., Any]


class PlugPoint(StrEnum):
    DRIFT = "drift"
    VALUE_LOSS = "value_loss"
    OPTIMIZER = "make_optimizer"
    ADVANTAGE = "advantage"
    TEMPORAL_DRIFT = "temporal_drift"
