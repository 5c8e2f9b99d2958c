"""`scientist train`: what to train (`TrainRequest`, resolved to a `TrainPlan` the same
way on both sides of the sandbox), what a run returns (`TrainedReturns`), and trusted
components (a baseline) trained in this process (`run_in_process`). A candidate trains in
the sandbox: harness/train.py starts sandbox/training/run_training.py.
"""

import math
import time
from dataclasses import dataclass, fields

import numpy as np

from sandbox.budgets import EnvBudget, get_budget
from sandbox.training.config import PPOConfig, preset
from sandbox.training.run import TrainingBatch, TrainingSummary, summarise_returns

RESULT_FILE = "training.json"
EVAL_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class TrainPlan:
    config: PPOConfig
    seeds: int
    seed: int
    eval_seed: int
    learning_rates: tuple[float, ...] | None  # None: the config's own
    reference: EnvBudget | None  # normalises scores when the run matches a budget's

    @property
    def trained_rates(self) -> list[float]:
        return [float(x) for x in (self.learning_rates or [self.config.learning_rate])]


@dataclass(frozen=True)
class TrainRequest:
    """`scientist train`'s options, as they travel into the sandbox."""

    env: str = "CartPole-v1"
    seeds: int | None = None
    timesteps: int | None = None
    budget: str | None = None
    learning_rates: tuple[float, ...] | None = None
    seed: int = 0
    eval_seed: int | None = None
    eval_episodes: int | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "TrainRequest":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("learning_rates") is not None:
            values["learning_rates"] = tuple(values["learning_rates"])
        return cls(**values)

    def plan(self) -> TrainPlan:
        """KeyError or ValueError, with a message for people as its first argument, for an
        unknown budget or environment or a bad step count."""
        overrides, reference = {}, None
        seeds, timesteps = self.seeds, self.timesteps
        if self.budget is not None:
            chosen = get_budget(self.budget)
            entry = chosen.env(self.env)
            seeds = seeds or chosen.seeds
            overrides["eval_episodes"] = chosen.eval_episodes
            timesteps = timesteps or entry.timesteps
            # Normalised scores are only meaningful at the budget's own step count.
            reference = entry if timesteps == entry.timesteps else None
        if timesteps is not None:
            overrides["total_timesteps"] = timesteps
        if self.eval_episodes is not None:
            overrides["eval_episodes"] = self.eval_episodes
        config = preset(self.env, **overrides)
        eval_seed = self.seed + EVAL_SEED_OFFSET if self.eval_seed is None else self.eval_seed
        return TrainPlan(config, seeds or 8, self.seed, eval_seed, self.learning_rates, reference)


@dataclass(frozen=True)
class TrainedReturns:
    """What a training run reports: final returns [learning rate][seed], learning curves
    [learning rate][update] (None where no episode ended), and timings."""

    learning_rates: list[float]
    final_returns: list[list[float]]
    learning_curves: list[list[float | None]]
    compile_seconds: float
    train_seconds: float
    eval_seconds: float

    @classmethod
    def of(cls, batch: TrainingBatch, final_returns, eval_seconds: float) -> "TrainedReturns":
        from sandbox.training.run import pooled_learning_curve

        curves = pooled_learning_curve(batch.output, axis=1)
        return cls(
            [float(x) for x in batch.learning_rates],
            [[float(x) for x in row] for row in np.asarray(final_returns)],
            [[float(x) if np.isfinite(x) else None for x in row] for row in curves],
            float(batch.compile_seconds),
            float(batch.train_seconds),
            float(eval_seconds),
        )

    def summaries(self, plan: TrainPlan) -> list[TrainingSummary]:
        curves = [[math.nan if x is None else x for x in row] for row in self.learning_curves]
        return summarise_returns(
            plan.config, self.learning_rates, self.final_returns, curves, plan.reference
        )

    def env_steps(self, plan: TrainPlan) -> int:
        return plan.config.env_steps * plan.seeds * len(self.learning_rates)


def run_in_process(plan: TrainPlan, components, progress=None) -> TrainedReturns:
    """Train trusted components (a baseline) in this process; `progress` as train_batch's,
    with an "evaluate" phase after it."""
    from sandbox.training.run import evaluate_batch, train_batch

    batch = train_batch(
        plan.config,
        components,
        seeds=plan.seeds,
        seed=plan.seed,
        learning_rates=plan.learning_rates,
        progress=progress,
    )
    report = progress or (lambda *_: None)
    report("evaluate", 0, 1)
    start = time.perf_counter()
    final_returns = evaluate_batch(batch, eval_seed=plan.eval_seed)
    seconds = time.perf_counter() - start
    report("evaluate", 1, 1)
    return TrainedReturns.of(batch, final_returns, seconds)
