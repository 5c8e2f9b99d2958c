"""What the trainer, the evaluation, the scorer and batch sizing ask of an environment family.

A family is one module (sandbox/families/<name>.py) that declares its environments and
everything that differs between families: how to make an environment, its action
distribution (the policy head), the PPO settings each environment starts from, and the
sizes batch sizing needs without importing JAX. Nothing outside a family branches on it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class UnknownEnvironmentError(ValueError):
    pass


class ActionDistribution(Protocol):
    """The policy's distribution over actions, parameterised by the actor's output (its
    head). Pure JAX functions of arrays with a leading batch axis."""

    def head_size(self, action_size: int) -> int: ...

    def sample(self, rng, head): ...

    def log_prob_and_entropy(self, head, action): ...

    def mode(self, head): ...  # the greedy action


@dataclass(frozen=True)
class EnvSpec:
    """A made environment, as the trainer and the evaluation use it."""

    env: Any  # the family's environment object (gymnax's step/reset interface)
    params: Any  # its parameters
    obs_shape: tuple[int, ...]
    action_size: int  # discrete: number of actions; continuous: the action vector's length
    max_episode_steps: int
    distribution: ActionDistribution

    @property
    def head_size(self) -> int:
        return self.distribution.head_size(self.action_size)


@dataclass(frozen=True)
class Family:
    name: str
    # env id -> (flattened observation size, action size), checked against the made
    # environments by tests/test_batch_sizing.py
    sizes: Mapping[str, tuple[int, int]]
    make: Callable[[str], EnvSpec]
    # env id -> PPOConfig fields that differ from its defaults (PureJaxRL's CartPole)
    preset: Callable[[str], dict] = field(default=lambda env_id: {})
    # policy head outputs per action (size): the distribution's head_size, known without JAX
    head_per_action: int = 1

    @property
    def env_ids(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def head_size(self, env_id: str) -> int:
        return self.sizes[env_id][1] * self.head_per_action
