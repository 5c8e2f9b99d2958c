"""Named compute budgets: which environments, how many steps and seeds, and the reference
returns that normalise scores at that budget. The one place these numbers live.

Reference returns (`random_return`, `ppo_return`) are IQMs over seeds of the built-in PPO
trainer at exactly this budget, measured with `scientist calibrate --budget NAME`, except
where `reference_source` says otherwise.
"""

import dataclasses
from dataclasses import dataclass

from sandbox.training.config import PPOConfig, preset


@dataclass(frozen=True)
class EnvBudget:
    env_id: str
    timesteps: int
    random_return: float
    ppo_return: float
    reference_source: str = "calibrated"


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    seeds: int
    eval_episodes: int
    envs: tuple[EnvBudget, ...]

    @property
    def env_ids(self) -> tuple[str, ...]:
        return tuple(e.env_id for e in self.envs)

    def env(self, env_id: str) -> EnvBudget:
        for entry in self.envs:
            if entry.env_id == env_id:
                return entry
        raise KeyError(f"budget {self.name!r} has no entry for {env_id!r}; it covers {', '.join(self.env_ids)}")

    def config(self, env_id: str, **overrides) -> PPOConfig:
        """The PPO configuration for one environment at this budget."""
        settings = {"total_timesteps": self.env(env_id).timesteps, "eval_episodes": self.eval_episodes}
        return preset(env_id, **{**settings, **overrides})

    def with_references(self, references: dict[str, tuple[float, float]]) -> "Budget":
        """A copy with (random_return, ppo_return) replaced for the given environments."""
        envs = tuple(
            dataclasses.replace(e, random_return=references[e.env_id][0], ppo_return=references[e.env_id][1],
                                reference_source="calibrated")
            if e.env_id in references else e
            for e in self.envs
        )
        return dataclasses.replace(self, envs=envs)


_PUBLISHED = "PPO normaliser of the public 'How Should We Meta-Learn RL Algorithms?' code (1e7 steps)"

BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke",
        description="seconds on a laptop CPU: classic control, short runs, 2 seeds",
        seeds=2,
        eval_episodes=16,
        envs=(
            EnvBudget("CartPole-v1", 100_000, random_return=22.3, ppo_return=260.0),
            EnvBudget("Acrobot-v1", 100_000, random_return=-500.0, ppo_return=-110.0),
        ),
    ),
    "quick": Budget(
        name="quick",
        description="minutes on a CPU: classic control solved, MinAtar at 1e6 steps, 4 seeds",
        seeds=4,
        eval_episodes=32,
        envs=(
            EnvBudget("CartPole-v1", 500_000, random_return=22.3, ppo_return=495.0),
            EnvBudget("Acrobot-v1", 500_000, random_return=-500.0, ppo_return=-85.0),
            EnvBudget("Breakout-MinAtar", 1_000_000, random_return=0.5, ppo_return=20.0),
            EnvBudget("Asterix-MinAtar", 1_000_000, random_return=0.5, ppo_return=5.0),
            EnvBudget("Freeway-MinAtar", 1_000_000, random_return=0.0, ppo_return=20.0),
            EnvBudget("SpaceInvaders-MinAtar", 1_000_000, random_return=3.0, ppo_return=40.0),
        ),
    ),
    "paper": Budget(
        name="paper",
        description="the full MinAtar setting (1e7 steps) for a GPU, 16 seeds",
        seeds=16,
        eval_episodes=64,
        envs=(
            EnvBudget("CartPole-v1", 500_000, random_return=22.3, ppo_return=495.0),
            EnvBudget("Acrobot-v1", 500_000, random_return=-500.0, ppo_return=-85.0),
            EnvBudget("Breakout-MinAtar", 10_000_000, 0.5, 50.08, _PUBLISHED),
            EnvBudget("Asterix-MinAtar", 10_000_000, 0.5, 15.04, _PUBLISHED),
            EnvBudget("Freeway-MinAtar", 10_000_000, 0.0, 61.84, _PUBLISHED),
            EnvBudget("SpaceInvaders-MinAtar", 10_000_000, 3.0, 167.09, _PUBLISHED),
        ),
    ),
}


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise KeyError(f"unknown budget {name!r}; choose from {', '.join(BUDGETS)}") from None
