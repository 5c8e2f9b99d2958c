"""`scientist train`: what to train (`TrainRequest`, resolved the same way on both sides of
the sandbox), and a candidate drift trained inside the sandbox (`train_in_sandbox`, running
sandbox/training/run_training.py), never in the caller's process.

The sandboxed run reports raw numbers only: returns per learning rate and seed, learning
curves and timings. This side checks them against the plan it resolved itself (shapes,
learning rates, finite values) and summarises them (sandbox/training/run.py
summarise_returns). The numbers remain the sandbox's word: candidate code trained in the
process that reports them. `scientist train` only shows them; evaluation scores fitness
from the trained parameters in its own scorer.
"""

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from sandbox.backends import Limits
from sandbox.budgets import EnvBudget, get_budget
from sandbox.checks.pipeline import static_check
from sandbox.oneshot import run_in_sandbox
from sandbox.training.config import PPOConfig, preset
from sandbox.training.run import TrainingBatch, TrainingSummary, summarise_returns
from sandbox.vocabulary import Sandbox, Status

TRAIN_SECONDS = 3600.0
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


class TrainingFailed(Exception):
    """No returns: `status` (rejected, invalid, timeout or failed) and a one-line reason."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status


class MalformedResult(ValueError):
    pass


def train_in_sandbox(
    request: TrainRequest,
    source: str,
    *,
    filename: str = "candidate.py",
    sandbox: str = Sandbox.AUTO,
    seconds: float = TRAIN_SECONDS,
    gpu: bool = False,
) -> TrainedReturns:
    """Train the drift in `source` as `request` says, in the sandbox. TrainingFailed when
    it yields no returns; SandboxUnavailable when no sandbox can run it."""
    plan = request.plan()  # usage errors here, before any sandbox starts
    static = static_check(source)
    if not static.passed:
        raise TrainingFailed(Status.REJECTED, static.detail)
    cores = os.cpu_count() or 1
    shot = run_in_sandbox(
        "sandbox.training.run_training",
        source,
        {"filename": filename, "train": asdict(request)},
        RESULT_FILE,
        sandbox=sandbox,
        # CPU time for every core for the whole wall-clock limit: the wall clock decides.
        limits=Limits(wall_seconds=seconds, cpu_seconds=int(seconds * cores) + 60),
        gpu=gpu,
    )
    if shot.timed_out:
        raise TrainingFailed(Status.TIMEOUT, f"training did not finish in {seconds:g} s")
    if shot.failure is not None:
        raise TrainingFailed(Status.FAILED, f"the sandboxed training failed: {shot.failure}")
    try:
        return parse_result(shot.data, plan)
    except MalformedResult as error:
        raise TrainingFailed(Status.FAILED, f"the sandbox's result is malformed: {error}") from None


def parse_result(data: bytes, plan: TrainPlan) -> TrainedReturns:
    """The returns in a sandbox's result file, checked against `plan`; TrainingFailed for a
    verdict the run reports (its candidate would not load, or broke its contract)."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise MalformedResult(f"not JSON ({type(error).__name__})") from None
    if isinstance(raw, dict) and set(raw) == {"error", "detail"}:
        status, detail = raw["error"], raw["detail"]
        if status in (Status.REJECTED, Status.INVALID) and isinstance(detail, str):
            raise TrainingFailed(Status(status), detail[:4000])
        raise MalformedResult("an error record of no known kind")
    if not isinstance(raw, dict) or set(raw) != {f.name for f in fields(TrainedReturns)}:
        raise MalformedResult("not the fields of a training result")
    rates = plan.trained_rates
    if raw["learning_rates"] != rates:
        raise MalformedResult(f"it trained learning rates {raw['learning_rates']!r:.200}")
    returns = _rows(raw["final_returns"], len(rates), plan.seeds, "final_returns", optional=False)
    curves = _rows(
        raw["learning_curves"], len(rates), plan.config.num_updates, "learning_curves", True
    )
    seconds = [raw[k] for k in ("compile_seconds", "train_seconds", "eval_seconds")]
    if not all(_number(x) and x >= 0 for x in seconds) or seconds[1] <= 0:
        raise MalformedResult("its timings are not positive numbers")
    return TrainedReturns(rates, returns, curves, *(float(x) for x in seconds))


def _rows(value: Any, rows: int, columns: int, name: str, optional: bool) -> list[list]:
    if not (
        isinstance(value, list)
        and len(value) == rows
        and all(isinstance(row, list) and len(row) == columns for row in value)
    ):
        raise MalformedResult(f"{name} is not {rows} rows of {columns}")
    if not all(_number(x) or (optional and x is None) for row in value for x in row):
        raise MalformedResult(f"{name} holds something other than finite numbers")
    return [[None if x is None else float(x) for x in row] for row in value]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
