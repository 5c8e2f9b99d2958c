"""Evaluations as Ray tasks: each runs the cascade (and its sandbox) on whichever node has
the resources it asks for, and hands the Evaluation back to the campaign, which alone
writes to the archive.

Behaviour-signature claims are archive writes too, and a node may not reach the archive
(a SQLite file on the campaign's machine). So a task asks a small broker actor, and the
campaign thread waiting for that task answers it from the archive: the campaign stays the
only writer and a duplicate still stops before training.

A task evaluates a batch of candidates. Fault tolerance: a task whose worker process or
node dies is retried by Ray on another node (`max_retries`); one that dies every time comes
back split in two, each half a task again, down to a batch of one, which comes back as a
`crashed` Evaluation, recorded like any failure. A retried task claims its signature
again, which the archive answers idempotently. Ctrl-C cancels the tasks in flight (they
stay pending for resume).
"""

import os
import time
from dataclasses import replace

from harness.cascade import Evaluation, EvaluationRequest, StageRecord
from sandbox.budgets import get_budget
from sandbox.vocabulary import ExecutorName, Status
from scientist.executors.base import ExecutorUnavailable
from scientist.executors.sizing import GPU_BATCH, BatchChoice, default_batch

MAX_RETRIES = 2  # a task runs at most 3 times when workers or nodes die under it
POLL_SECONDS = 0.2


class RayExecutor:
    name = ExecutorName.RAY

    def __init__(self, address: str | None = None, *, max_retries: int = MAX_RETRIES):
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable(
                "the ray executor needs Ray: pip install -e '.[ray]'"
            ) from None
        self.ray = ray
        if not ray.is_initialized():
            # The runtime environment only names what every node must already have installed;
            # candidates never travel this way, only their source as a task argument.
            try:
                ray.init(
                    address=address,
                    ignore_reinit_error=True,
                    log_to_driver=False,
                    runtime_env={"env_vars": _forwarded_env()},
                )
            except (
                ConnectionError,
                RuntimeError,
                ValueError,
            ) as error:  # no cluster at the address
                raise ExecutorUnavailable(
                    f"cannot start or join a Ray cluster ({address or 'a new one here'}): {error}"
                ) from None
        self.max_retries = max_retries
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the head node: the broker must outlive any worker node that dies.
        head = next(
            (
                n["NodeID"]
                for n in ray.nodes()
                if n["Alive"] and "node:__internal_head__" in n["Resources"]
            ),
            ray.get_runtime_context().get_node_id(),
        )
        self.broker = (
            _broker_class(ray)
            .options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False))
            .remote()
        )
        self.has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        self.remote = ray.remote(_evaluate_on_node)

    def __call__(self, request: EvaluationRequest) -> list[Evaluation]:
        """One Ray task per batch."""
        ray = self.ray
        claims = list(request.claims or [None] * len(request.sources))
        gpu = get_budget(request.budget).gpu and self.has_gpus
        batch_key = os.urandom(8).hex()  # this batch's mailboxes at the broker, one per member
        keys = [f"{batch_key}:{i}" if claim else None for i, claim in enumerate(claims)]
        started = time.monotonic()
        ref = self.remote.options(
            num_cpus=1,
            num_gpus=1 if gpu else 0,
            max_retries=self.max_retries,
            retry_exceptions=False,
        ).remote(replace(request, claims=None, cancelled=None), gpu, self.broker, keys)

        def everyone(status: str, stages=()) -> list[Evaluation]:
            seconds = time.monotonic() - started
            return [
                Evaluation(
                    status, None, stages=list(stages), backend=ExecutorName.RAY, seconds=seconds
                )
                for _ in request.sources
            ]

        try:
            while True:
                ready, _ = ray.wait([ref], timeout=POLL_SECONDS)
                if ready:
                    return ray.get(ref)
                if request.cancelled is not None and request.cancelled():
                    ray.cancel(ref, force=True)
                    return everyone(Status.CANCELLED)
                for key, claim in zip(keys, claims, strict=True):
                    if claim is not None:
                        asked = ray.get(self.broker.asked.remote(key))
                        if asked is not None:
                            self.broker.answer.remote(key, claim(asked))
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.OwnerDiedError,
            ray.exceptions.ObjectLostError,
        ) as error:
            n = len(request.sources)
            if n > 1:  # split, so that only a batch of one is ever charged
                return [*self(request.part(0, n // 2)), *self(request.part(n // 2, n))]
            detail = (
                f"the Ray worker died {self.max_retries + 1} times: {type(error).__name__}: {error}"
            )[:2000]
            record = StageRecord(
                ExecutorName.RAY, Status.CRASHED, time.monotonic() - started, detail
            )
            return everyone(Status.CRASHED, [record])
        finally:
            for key in keys:
                if key is not None:
                    self.broker.forget.remote(key)

    def batch_choice(self, budget: str, workers: int) -> BatchChoice:
        if get_budget(budget).gpu and self.has_gpus:  # the nodes' free memory is not read from here
            return BatchChoice(GPU_BATCH, f"batch {GPU_BATCH}: the GPU default on a Ray cluster")
        return default_batch(budget, workers, gpu=False)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


def _evaluate_on_node(request, gpu, broker, keys) -> list[Evaluation]:
    """The Ray task: the cascade on this node, its claims relayed to the campaign."""
    import ray

    import sandbox as _sandbox  # noqa: F401  (XLA flags before jax)
    from harness.cascade import evaluate

    def claim_through(key: str):
        def claim(signature: str) -> int | None:
            ray.get(broker.ask.remote(key, signature))
            while True:
                reply = ray.get(broker.reply.remote(key))
                if reply is not None:
                    return reply[0]
                time.sleep(POLL_SECONDS / 2)

        return claim

    claims = [claim_through(key) if key else None for key in keys]
    return evaluate(replace(request, claims=claims), gpu=gpu)


def _broker_class(ray):
    @ray.remote(num_cpus=0)
    class SignatureBroker:
        """Mailboxes: a task leaves its signature, the campaign thread leaves the answer."""

        def __init__(self):
            self.questions: dict[str, str] = {}
            self.answers: dict[str, tuple[int | None]] = {}

        def ask(self, key: str, signature: str) -> None:
            self.answers.pop(key, None)  # a retried task asks afresh
            self.questions[key] = signature

        def asked(self, key: str) -> str | None:
            return self.questions.pop(key, None)

        def answer(self, key: str, duplicate_of: int | None) -> None:
            self.answers[key] = (duplicate_of,)

        def reply(self, key: str) -> tuple[int | None] | None:
            return self.answers.get(key)

        def forget(self, key: str) -> None:
            self.questions.pop(key, None)
            self.answers.pop(key, None)

    return SignatureBroker


def _forwarded_env() -> dict[str, str]:
    """Settings a node's cascade reads (never API keys: the sandbox needs none)."""
    names = ("SCIENTIST_SANDBOX_IMAGE", "SCIENTIST_SCRATCH", "XLA_FLAGS")
    return {n: os.environ[n] for n in names if n in os.environ}
