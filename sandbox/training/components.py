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

The default of a plug point is the default baseline of the kind of piece that fills it
(sandbox/pieces), loaded from its task folder, so the built-ins and the baselines a campaign
starts from are one and the same code; a plug point no kind fills keeps PPO's behaviour.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # no JAX at import: task specs and plug points are read outside the sandbox too
    import jax.numpy as jnp
    import optax

    Drift = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    ValueLoss = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    OptimizerFactory = Callable[[float | optax.Schedule, float], optax.GradientTransformation]
    AdvantageTransform = Callable[[jnp.ndarray], jnp.ndarray]
else:
    Drift = ValueLoss = OptimizerFactory = AdvantageTransform = Callable[..., Any]


class PlugPoint(StrEnum):
    DRIFT = "drift"
    VALUE_LOSS = "value_loss"
    OPTIMIZER = "make_optimizer"
    ADVANTAGE = "advantage"


def unchanged(advantage):
    return advantage


def _default(plug_point: PlugPoint, otherwise=None):
    def load():
        from sandbox.pieces import piece_at  # pieces describe the trainer, not the other way round
        from sandbox.tasks import load_baseline

        piece = piece_at(plug_point)
        if piece is None or piece.default is None:
            return otherwise
        return load_baseline(*piece.default)

    return field(default_factory=load)


@dataclass(frozen=True)
class Components:
    drift: Drift = _default(PlugPoint.DRIFT)
    value_loss: ValueLoss = _default(PlugPoint.VALUE_LOSS)
    make_optimizer: OptimizerFactory = _default(PlugPoint.OPTIMIZER)
    advantage: AdvantageTransform = _default(PlugPoint.ADVANTAGE, unchanged)
