"""gymnax's continuous-action classic control: Pendulum, with a diagonal Gaussian policy.

A small continuous family beside Brax's: it trains in seconds on a CPU, so the Gaussian
head, its log-probability and entropy, and clipped actions are tested on every run.
"""

from sandbox.families.base import EnvSpec, Family, UnknownEnvironmentError


def make(env_id: str) -> EnvSpec:
    """A gymnax environment with a box action space (it clips actions to its bounds)."""
    from sandbox.families.distributions import DIAGONAL_GAUSSIAN
    from sandbox.families.gymnax_discrete import gymnax_make

    env, params = gymnax_make(env_id)
    action_space = env.action_space(params)
    if len(action_space.shape) != 1:  # guards additions to the sizes below
        raise UnknownEnvironmentError(f"{env_id} does not have a vector action space")
    return EnvSpec(
        env=env,
        params=params,
        obs_shape=tuple(env.observation_space(params).shape),
        action_size=int(action_space.shape[0]),
        max_episode_steps=int(params.max_steps_in_episode),
        distribution=DIAGONAL_GAUSSIAN,
    )


GYMNAX_CONTINUOUS = Family(
    name="gymnax_continuous",
    sizes={"Pendulum-v1": (3, 1)},
    make=make,
    head_per_action=2,
    # Pendulum's usual PPO settings (short horizon, many epochs, no entropy bonus), and no
    # value clipping: 0.2 around the old values keeps the critic from tracking returns near
    # -1000 (measured: no learning at 2e5 steps with it, about -170 without)
    preset=lambda env_id: {
        "clip_value": False,
        "total_timesteps": 500_000,
        "num_envs": 16,
        "num_steps": 128,
        "update_epochs": 10,
        "num_minibatches": 8,
        "learning_rate": 1e-3,
        "gamma": 0.9,
        "ent_coef": 0.0,
    },
)
