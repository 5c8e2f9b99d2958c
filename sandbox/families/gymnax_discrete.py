"""gymnax's discrete-action environments: classic control and MinAtar, categorical policies.

MinAtar's image observations are flattened for the MLP; its PPO settings are PureJaxRL's
MinAtar ones (64 environments x 128 steps, a ReLU MLP) with the per-game learning rates of
the public "How Should We Meta-Learn RL Algorithms?" code.
"""

import importlib
import importlib.util
import sys
import types

from sandbox.families.base import EnvSpec, Family, UnknownEnvironmentError

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


def gymnax_make(env_id: str):
    """gymnax.make, imported on first use (slow to import; most callers need the ids only)."""
    _defer_rendering_imports()
    import gymnax

    return gymnax.make(env_id)


def make(env_id: str) -> EnvSpec:
    """A gymnax environment with a discrete action space; image observations flattened."""
    env, params = gymnax_make(env_id)
    from gymnax.environments import spaces
    from gymnax.wrappers.purerl import FlattenObservationWrapper

    from sandbox.families.distributions import CATEGORICAL

    action_space = env.action_space(params)
    if not isinstance(action_space, spaces.Discrete):  # guards additions to the sizes below
        raise UnknownEnvironmentError(f"{env_id} does not have a discrete action space")
    if len(env.observation_space(params).shape) > 1:
        env = FlattenObservationWrapper(env)
    return EnvSpec(
        env=env,
        params=params,
        obs_shape=tuple(env.observation_space(params).shape),
        action_size=int(action_space.n),
        max_episode_steps=int(params.max_steps_in_episode),
        distribution=CATEGORICAL,
    )


CLASSIC_CONTROL = Family(
    name="classic_control",
    sizes={"CartPole-v1": (4, 2), "Acrobot-v1": (6, 3)},
    make=make,  # PPOConfig's defaults are PureJaxRL's CartPole example
)

_MINATAR_LR = {
    "Breakout-MinAtar": 1e-2,
    "SpaceInvaders-MinAtar": 7e-3,
    "Asterix-MinAtar": 3e-3,
    "Freeway-MinAtar": 1e-3,
}

MINATAR = Family(
    name="minatar",
    sizes={
        "Breakout-MinAtar": (400, 3),
        "Asterix-MinAtar": (400, 5),
        "Freeway-MinAtar": (700, 3),
        "SpaceInvaders-MinAtar": (600, 4),
    },
    make=make,
    preset=lambda env_id: {
        "total_timesteps": 10_000_000,
        "num_envs": 64,
        "num_steps": 128,
        "num_minibatches": 8,
        "learning_rate": _MINATAR_LR[env_id],
        "activation": "relu",
    },
)
