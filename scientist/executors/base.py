"""The executor interface and the choice between implementations."""

import glob
from collections.abc import Callable
from typing import Protocol

from harness.cascade import Evaluation, EvaluationRequest, evaluate
from sandbox.budgets import get_budget
from sandbox.vocabulary import ExecutorName
from scientist.executors.sizing import BatchChoice, default_batch


class ExecutorUnavailable(RuntimeError):
    """The executor cannot start here (Ray missing, no cluster at the address...)."""


class Executor(Protocol):
    name: str

    def __call__(self, request: EvaluationRequest) -> list[Evaluation]:
        """One batch (harness.cascade.evaluate): an Evaluation per source, in order; with
        `further_blocks`, each lists one Evaluation per block in `blocks`; at fidelity SCREEN,
        on the meta-train environments alone."""

    def batch_choice(self, budget: str, workers: int) -> BatchChoice:
        """The batch size where `--batch` is not given (scientist/executors/sizing.py)."""

    def close(self) -> None: ...


class LocalExecutor:
    """The cascade in the calling thread: the campaign's evaluator threads are the pool."""

    name = ExecutorName.LOCAL

    def __call__(self, request: EvaluationRequest) -> list[Evaluation]:
        return evaluate(request, gpu=gpu_for(request.budget))

    def batch_choice(self, budget: str, workers: int) -> BatchChoice:
        return default_batch(budget, workers, gpu_for(budget))

    def close(self) -> None:
        pass


def batch_choice(executor: Executor | Callable, budget: str, workers: int) -> BatchChoice:
    """The executor's batch size; a plain evaluate function (a test's stand-in) gets the
    local machine's."""
    choose = getattr(executor, "batch_choice", None)
    return choose(budget, workers) if choose else default_batch(budget, workers, gpu_for(budget))


def gpu_for(budget: str) -> bool:
    """One GPU per evaluation where the budget asks for it (paper: MinAtar for 1e7 steps) and
    this machine has one (a GPU request to Docker without NVIDIA's toolkit fails at start)."""
    return get_budget(budget).gpu and gpu_present()


def gpu_present() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))
