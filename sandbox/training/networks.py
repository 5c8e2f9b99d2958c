"""Separate actor and critic networks, initialised as in PureJaxRL (orthogonal, zero bias)."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str
    out_size: int
    out_scale: float

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(nn.Dense(size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
        return nn.Dense(
            self.out_size, kernel_init=orthogonal(self.out_scale), bias_init=constant(0.0)
        )(x)


class ActorCritic(nn.Module):
    """Returns (the policy head: what the family's action distribution takes, e.g. logits;
    state value). `value` alone skips the actor."""

    head_size: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    def setup(self):
        self.actor = MLP(self.hidden_sizes, self.activation, self.head_size, 0.01)
        self.critic = MLP(self.hidden_sizes, self.activation, 1, 1.0)

    def __call__(self, obs):
        return self.actor(obs), jnp.squeeze(self.critic(obs), -1)

    def value(self, obs):
        return jnp.squeeze(self.critic(obs), -1)

    def policy(self, obs):
        return self.actor(obs)
