"""The pluggable pieces of the learning algorithm.

A discovery task replaces one of these with candidate code; the trainer only sees this
dataclass. Each piece is a pure JAX function:

- drift(ratio, advantage) -> array, elementwise, a Mirror Learning drift. The policy loss is
  -mean(ratio * A - drift(ratio, A)), with A normalised per minibatch.
- value_loss(prediction, target) -> array, elementwise; the trainer averages it (and applies
  PPO's value clipping around it when the config asks for it).
- make_optimizer(learning_rate, max_grad_norm) -> optax.GradientTransformation, where
  learning_rate may be a float or an optax schedule.

The defaults are PPO's, taken from the task baselines in task_templates/ so that the
built-ins and the baselines a campaign starts from are one and the same code.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import jax.numpy as jnp
import optax

Drift = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
ValueLoss = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
OptimizerFactory = Callable[[float | optax.Schedule, float], optax.GradientTransformation]


def _baseline(task: str, name: str):
    def load():
        from sandbox.tasks import load_baseline  # tasks import the trainer's config

        return load_baseline(task, name)

    return field(default_factory=load)


@dataclass(frozen=True)
class Components:
    drift: Drift = _baseline("mirror_drift", "ppo")
    value_loss: ValueLoss = _baseline("value_loss", "squared_error")
    make_optimizer: OptimizerFactory = _baseline("optimizer", "adam")
