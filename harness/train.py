"""`scientist train --candidate`: a candidate drift trained inside the sandbox (running
sandbox/training/run_training.py), never in the caller's process.

The sandboxed run reports raw numbers only: returns per learning rate and seed, learning
curves and timings. This side checks them against the plan it resolved itself (shapes,
learning rates, finite values); the caller summarises them (sandbox/training/run.py
summarise_returns). The numbers remain the sandbox's word: candidate code trained in the
process that reports them. `scientist train` only shows them; evaluation scores fitness
from the trained parameters in its own scorer.
"""

import json
import math
import os
from dataclasses import asdict, fields
from typing import Any

from harness.backends import Limits
from harness.oneshot import run_in_sandbox
from sandbox.checks.pipeline import static_check
from sandbox.training.plan import RESULT_FILE, TrainedReturns, TrainPlan, TrainRequest
from sandbox.vocabulary import Sandbox, Status

TRAIN_SECONDS = 3600.0


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
