"""Named compute budgets: which environments, how many steps and seeds, and the reference
returns that normalise scores at that budget. The one place these numbers live.

`random_return` is the uniform-random policy's mean return; `ppo_return` is the IQM over
seeds of the built-in PPO at exactly this budget. Both are measured with
`scientist calibrate --budget NAME`, except where `reference_source` says otherwise.
"""

from dataclasses import dataclass

from sandbox.training.config import PPOConfig, preset


@dataclass(frozen=True)
class EnvBudget:
    env_id: str
    timesteps: int
    random_return: float
    ppo_return: float
    reference_source: str = "calibrated"
    # PPO settings this budget changes from the environment's preset, as (name, value) pairs
    overrides: tuple[tuple[str, float | int], ...] = ()


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    seeds: int
    eval_episodes: int
    envs: tuple[EnvBudget, ...]
    # The split a task gets here unless its task.toml names its own: the environments the
    # search scores on, and those held out to test transfer
    meta_train: tuple[str, ...]
    meta_test: tuple[str, ...]
    full_seconds: float  # the time limit of one full-stage sandbox run (one block of seeds)
    # Fresh blocks of `seeds` per elite re-evaluation: a label rests on these alone (the
    # search's block picked the candidate), so they must reach an interval (8 seeds) and
    # resolve the measured seed noise (README, "How many seeds").
    reevaluation_blocks: int = 3
    gpu: bool = False  # one GPU per evaluation, where the machine (or Ray cluster) has one

    def __post_init__(self):
        missing = set(self.meta_train + self.meta_test) - set(self.env_ids)
        if missing or not self.meta_train:
            raise ValueError(
                f"budget {self.name}: its split needs a meta-train environment, and budgets "
                f"for every environment it names (none for {', '.join(sorted(missing))})"
            )

    @property
    def env_ids(self) -> tuple[str, ...]:
        return tuple(e.env_id for e in self.envs)

    def env(self, env_id: str) -> EnvBudget:
        for entry in self.envs:
            if entry.env_id == env_id:
                return entry
        raise KeyError(
            f"budget {self.name!r} has no entry for {env_id!r}; it covers {', '.join(self.env_ids)}"
        )

    def config(self, env_id: str, **overrides) -> PPOConfig:
        """The PPO configuration for one environment at this budget."""
        entry = self.env(env_id)
        settings = {
            "total_timesteps": entry.timesteps,
            "eval_episodes": self.eval_episodes,
            **dict(entry.overrides),
        }
        return preset(env_id, **{**settings, **overrides})


# Uniform-random policy, 1024 episodes each (standard errors <= 0.4 return units).
_RANDOM = {
    "CartPole-v1": 22.52,
    "Acrobot-v1": -499.29,
    "Breakout-MinAtar": 0.43,
    "Asterix-MinAtar": 0.49,
    "Freeway-MinAtar": 0.41,
    "SpaceInvaders-MinAtar": 4.04,
}
_PUBLISHED = (
    "PPO normaliser of the public 'How Should We Meta-Learn RL Algorithms?' code (1e7 steps)"
)


def random_return(env_id: str) -> float:
    """The uniform-random policy's mean return on an environment."""
    return _RANDOM[env_id]


def _env(
    env_id: str, timesteps: int, ppo_return: float, source: str = "calibrated", **overrides
) -> EnvBudget:
    settings = tuple(sorted(overrides.items()))
    return EnvBudget(env_id, timesteps, _RANDOM[env_id], ppo_return, source, settings)


# The discovery budget's PPO settings per environment (benchmarks/settings.py's grid).
_ACROBOT = {"update_epochs": 16, "num_minibatches": 1, "learning_rate": 3e-3}
_CARTPOLE = {"update_epochs": 8, "num_minibatches": 1, "learning_rate": 1e-2}

# The DPO paper's MinAtar split: meta-train on Breakout, test transfer on the other three.
_MINATAR_TRAIN = ("Breakout-MinAtar",)
_MINATAR_TEST = ("Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")

# PPO references: IQM of the built-in PPO over 16 seeds (classic control) or 8 seeds
# (MinAtar), `scientist calibrate` on 2 CPU cores, JAX 0.10.2.
BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke",
        description="seconds on a laptop CPU: classic control, short runs, 2 seeds",
        seeds=2,
        eval_episodes=16,
        envs=(
            _env("CartPole-v1", 100_000, 264.35),
            _env("Acrobot-v1", 100_000, -198.63),
        ),
        meta_train=("CartPole-v1",),
        meta_test=("Acrobot-v1",),
        full_seconds=900.0,
        reevaluation_blocks=4,
    ),
    # Where the drift decides at CPU cost (`python -m benchmarks.settings`, README "The
    # discovery budget"): many epochs on one minibatch, so PPO's trust region matters and
    # without a drift Acrobot collapses; drift ranks there agree with Breakout-MinAtar's.
    "discovery": Budget(
        name="discovery",
        description="where the drift decides, on a CPU: Acrobot at 25k steps (16 epochs, one "
        "minibatch), CartPole at 50k, 2 seeds",
        seeds=2,
        eval_episodes=16,
        envs=(
            _env("Acrobot-v1", 25_000, -118.89, **_ACROBOT),
            _env("CartPole-v1", 50_000, 498.2, **_CARTPOLE),
        ),
        meta_train=("Acrobot-v1",),
        meta_test=("CartPole-v1",),
        full_seconds=900.0,
        reevaluation_blocks=4,
    ),
    "quick": Budget(
        name="quick",
        description="minutes on a CPU: classic control solved, MinAtar at 1e6 steps, 4 seeds",
        seeds=4,
        eval_episodes=32,
        envs=(
            _env("CartPole-v1", 500_000, 500.0),
            _env("Acrobot-v1", 500_000, -83.11),
            _env("Breakout-MinAtar", 1_000_000, 28.84),
            _env("Asterix-MinAtar", 1_000_000, 2.09),
            _env("Freeway-MinAtar", 1_000_000, 32.09),
            _env("SpaceInvaders-MinAtar", 1_000_000, 86.99),
        ),
        meta_train=_MINATAR_TRAIN,
        meta_test=_MINATAR_TEST,
        full_seconds=4 * 3600.0,
    ),
    "paper": Budget(
        name="paper",
        description="the full MinAtar setting (1e7 steps) for a GPU, 16 seeds",
        seeds=16,
        eval_episodes=64,
        envs=(
            _env("CartPole-v1", 500_000, 500.0),
            _env("Acrobot-v1", 500_000, -83.11),
            _env("Breakout-MinAtar", 10_000_000, 50.08, _PUBLISHED),
            _env("Asterix-MinAtar", 10_000_000, 15.04, _PUBLISHED),
            _env("Freeway-MinAtar", 10_000_000, 61.84, _PUBLISHED),
            _env("SpaceInvaders-MinAtar", 10_000_000, 167.09, _PUBLISHED),
        ),
        meta_train=_MINATAR_TRAIN,
        meta_test=_MINATAR_TEST,
        full_seconds=24 * 3600.0,
        reevaluation_blocks=1,
        gpu=True,
    ),
}


BUDGET_NAMES = ", ".join(BUDGETS)  # for help texts
REEVALUATION_BLOCKS = ", ".join(f"{b.name} {b.reevaluation_blocks}" for b in BUDGETS.values())


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise KeyError(f"unknown budget {name!r}; choose from {', '.join(BUDGETS)}") from None
