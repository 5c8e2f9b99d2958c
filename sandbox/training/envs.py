"""The discrete-action gymnax environments the trainer supports, behind one constructor."""

import importlib
import importlib.util
import sys
import types
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


# gymnax imports these at module level for rendering (its Pong, Catch, Rooms), which nothing
# here does: a stand-in module imports the real one on first use, so they no longer cost
# every sandbox and scorer process about a second at start.
RENDERING_ONLY = ("seaborn", "matplotlib.pyplot")


class _OnFirstUse(types.ModuleType):
    def __getattr__(self, attribute: str):  # only for what the stand-in lacks: all of it
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def _defer_rendering_imports() -> None:
    for name in RENDERING_ONLY:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            sys.modules[name] = _OnFirstUse(name)


def make_env(env_id: str, *, flatten: bool = True) -> EnvSpec:
    """Build a gymnax environment; MinAtar image observations are flattened for an MLP."""
    _defer_rendering_imports()
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
