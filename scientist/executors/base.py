"""The executor interface and the choice between implementations."""

import glob
from collections.abc import Callable, Sequence
from typing import Protocol

from sandbox.cascade import Evaluation, evaluate_batch
from sandbox.vocabulary import ExecutorName, Fidelity
from scientist.executors.sizing import BatchChoice, default_batch


class ExecutorUnavailable(RuntimeError):
    """The executor cannot start here (Ray missing, no cluster at the address...)."""


class Executor(Protocol):
    name: str

    def __call__(
        self,
        task: str,
        sources: list[str],
        budget: str,
        *,
        sandbox: str,
        seed: int,
        claims: list[Callable[[str], int | None] | None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        eval_seed: int | None = None,
        further_blocks: Sequence[tuple[int, int | None]] = (),
        fidelity: Fidelity = Fidelity.FULL,
    ) -> list[Evaluation]:
        """One batch (sandbox.cascade.evaluate_batch): an Evaluation per source, in order;
        with `further_blocks`, each lists one Evaluation per block in `blocks`; at `fidelity`
        SCREEN, on the meta-train environments alone."""

    def batch_choice(self, budget: str, workers: int) -> BatchChoice:
        """The batch size where `--batch` is not given (scientist/executors/sizing.py)."""

    def close(self) -> None: ...


class LocalExecutor:
    """The cascade in the calling thread: the campaign's evaluator threads are the pool."""

    name = ExecutorName.LOCAL

    def __call__(
        self,
        task,
        sources,
        budget,
        *,
        sandbox,
        seed,
        claims=None,
        cancelled=None,
        eval_seed=None,
        further_blocks=(),
        fidelity=Fidelity.FULL,
    ) -> list[Evaluation]:
        return evaluate_batch(
            task,
            sources,
            budget,
            sandbox=sandbox,
            seed=seed,
            gpu=gpu_for(budget),
            claims=claims,
            cancelled=cancelled,
            eval_seed=eval_seed,
            further_blocks=further_blocks,
            fidelity=fidelity,
        )

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
    """The paper budget trains MinAtar for 1e7 steps: one GPU per evaluation, where this
    machine has one (a GPU request to Docker without NVIDIA's toolkit fails at start)."""
    return budget == "paper" and gpu_present()


def gpu_present() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))
