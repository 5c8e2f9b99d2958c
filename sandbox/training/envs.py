"""The discrete-action gymnax environments the trainer supports, behind one constructor."""

from dataclasses import dataclass
from typing import Any

CLASSIC_CONTROL = ("CartPole-v1", "Acrobot-v1")
MINATAR = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")
SUPPORTED_ENVS = CLASSIC_CONTROL + MINATAR
# (flattened observation size, actions) of each, for sizing batches without importing JAX;
# tests/test_batch_sizing.py checks them against gymnax.
SIZES = {
    "CartPole-v1": (4, 2),
    "Acrobot-v1": (6, 3),
    "Breakout-MinAtar": (400, 3),
    "Asterix-MinAtar": (400, 5),
    "Freeway-MinAtar": (700, 3),
    "SpaceInvaders-MinAtar": (600, 4),
}


class UnknownEnvironmentError(ValueError):
    pass


@dataclass(frozen=True)
class EnvSpec:
    env: Any  # a gymnax Environment (possibly wrapped)
    params: Any  # its EnvParams
    obs_shape: tuple[int, ...]
    num_actions: int
    max_episode_steps: int


def check_env_id(env_id: str) -> None:
    if env_id not in SUPPORTED_ENVS:
        raise UnknownEnvironmentError(
            f"unknown environment {env_id!r}; supported: {', '.join(SUPPORTED_ENVS)}"
        )


def make_env(env_id: str, *, flatten: bool = True) -> EnvSpec:
    """Build a gymnax environment; MinAtar image observations are flattened for an MLP."""
    import gymnax  # imported here: it is slow to import and most callers only need the ids
    from gymnax.environments import spaces
    from gymnax.wrappers.purerl import FlattenObservationWrapper

    check_env_id(env_id)
    env, params = gymnax.make(env_id)
    action_space = env.action_space(params)
    if not isinstance(action_space, spaces.Discrete):  # guards additions to SUPPORTED_ENVS
        raise UnknownEnvironmentError(f"{env_id} does not have a discrete action space")
    if flatten and len(env.observation_space(params).shape) > 1:
        env = FlattenObservationWrapper(env)
    return EnvSpec(
        env=env,
        params=params,
        obs_shape=tuple(env.observation_space(params).shape),
        num_actions=int(action_space.n),
        max_episode_steps=int(params.max_steps_in_episode),
    )
