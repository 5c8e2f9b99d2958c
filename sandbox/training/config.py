"""PPO hyperparameters, with per-environment presets declared by each environment family."""

import dataclasses
from dataclasses import dataclass

from sandbox.families import family_of


@dataclass(frozen=True)
class PPOConfig:
    env_id: str
    total_timesteps: int = 500_000
    num_envs: int = 4
    num_steps: int = 128
    update_epochs: int = 4
    num_minibatches: int = 4
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2  # value clipping; the policy's trust region lives in the drift
    clip_value: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    eval_episodes: int = 32
    eval_greedy: bool = False  # sample from the trained stochastic policy by default
    # Plug points whose piece runs under its kind's runtime monitor (training/monitor.py): the
    # sandbox watches the candidate's alone; () turns monitoring off (trusted benchmarks only).
    monitor: tuple[str, ...] = ("drift", "value_loss", "make_optimizer")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def env_steps(self) -> int:
        """Environment steps actually taken by one run (timesteps rounded down to whole updates)."""
        return self.num_updates * self.batch_size

    def validate(self) -> None:
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is smaller than one update "
                f"({self.num_envs} envs x {self.num_steps} steps = {self.batch_size})"
            )
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"batch of {self.batch_size} does not split into {self.num_minibatches} minibatches"
            )


def preset(env_id: str, **overrides) -> PPOConfig:
    """The environment family's PPO configuration for an environment, with keyword
    overrides."""
    base = PPOConfig(env_id=env_id, **family_of(env_id).preset(env_id))
    config = dataclasses.replace(base, **overrides)
    config.validate()
    return config
