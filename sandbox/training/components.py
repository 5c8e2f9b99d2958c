"""The pluggable pieces of the learning algorithm.

A discovery task replaces one of these with candidate code; the trainer only sees this
dataclass. Each piece is a pure JAX function:

- drift(ratio, advantage) -> array, elementwise, a Mirror Learning drift. The policy loss is
  -mean(ratio * A - drift(ratio, A)), with A normalised per minibatch.
- value_loss(prediction, target) -> array, elementwise; the trainer averages it (and applies
  PPO's value clipping around it when the config asks for it).
- make_optimizer(learning_rate, max_grad_norm) -> optax.GradientTransformation, where
  learning_rate may be a float or an optax schedule.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import jax.numpy as jnp
import optax

from sandbox.training import drifts

Drift = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
ValueLoss = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
OptimizerFactory = Callable[[float | optax.Schedule, float], optax.GradientTransformation]


def squared_error(prediction, target):
    return 0.5 * jnp.square(prediction - target)


def adam_with_grad_clipping(learning_rate, max_grad_norm):
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5))


@dataclass(frozen=True)
class Components:
    drift: Drift = drifts.ppo
    value_loss: ValueLoss = squared_error
    make_optimizer: OptimizerFactory = field(default=adam_with_grad_clipping)
