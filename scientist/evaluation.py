"""The one path from an archived, pending candidate to its recorded verdict.

Whoever proposes a candidate (the campaign loop, the ES campaign rendering its mean network,
distillation) first writes it to the archive. Then `Recorder` hands its code, alone or in a
batch with others, to the executor (the sandbox cascade in this process, or a Ray task on a
cluster), which claims the candidate's behaviour signature in the archive before training,
so a duplicate stops early. The verdict is written in one transaction with the candidate
(and its event, if asked for). An evaluation with no verdict leaves the candidate pending:
`cancelled` (the caller stopped) silently, `infra` (the sandbox itself failed) with an
event and SandboxInfraError.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import Engine

from archive import writes
from archive.db import transaction
from archive.schema import Candidate
from sandbox.backends import SandboxInfraError
from sandbox.cascade import Evaluation
from sandbox.vocabulary import Status
from scientist.executors.base import Executor


class SignatureClaim(StrEnum):
    BEFORE_TRAINING = (
        "before_training"  # an earlier candidate behaving the same stops this one as a duplicate
    )
    AFTER_RECORDING = (
        "after_recording"  # always trained; the signature is kept only if no earlier one has it
    )


@dataclass(frozen=True)
class EventNote:
    """An event to log with the verdict: `label` names the candidate in its message."""

    kind: str
    label: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    candidate: Candidate
    evaluation: Evaluation


class Recorder:
    """Evaluates a campaign's candidates through an executor and records each verdict."""

    def __init__(
        self,
        engine: Engine,
        campaign_id: int,
        executor: Executor,
        *,
        task: str,
        budget: str,
        sandbox: str,
        seed: int,
        cancelled: Callable[[], bool] | None = None,
    ):
        self.engine, self.campaign_id, self.executor = engine, campaign_id, executor
        self.task, self.budget, self.sandbox, self.seed = task, budget, sandbox, seed
        self.cancelled = cancelled
        # Common random numbers for scoring too: every candidate this recorder scores is
        # evaluated on the same episodes. Drawn here, never sent to a sandbox.
        self.eval_seed = secrets.randbits(31)

    def __call__(
        self,
        candidate_id: int,
        code: str,
        *,
        claim: SignatureClaim = SignatureClaim.BEFORE_TRAINING,
        event: EventNote | None = None,
    ) -> Recorded | None:
        """One candidate: a batch of one (see `batch`)."""
        events = None if event is None else [event]
        return self.batch([(candidate_id, code)], claim=claim, events=events)[0]

    def batch(
        self,
        candidates: list[tuple[int, str]],
        *,
        claim: SignatureClaim = SignatureClaim.BEFORE_TRAINING,
        events: list[EventNote] | None = None,
    ) -> list[Recorded | None]:
        """(id, code) pairs evaluated as one batch: each as recorded, or None where the
        evaluation was cancelled (it stays pending). Raises SandboxInfraError, after logging
        it, when the sandbox failed; then none is recorded."""

        def claim_for(candidate_id: int):
            def claim_before_training(signature: str) -> int | None:
                with transaction(self.engine) as session:
                    return writes.claim_signature(
                        session, self.campaign_id, candidate_id, signature
                    )

            return claim_before_training if claim is SignatureClaim.BEFORE_TRAINING else None

        evaluations = self.executor(
            self.task,
            [code for _, code in candidates],
            self.budget,
            sandbox=self.sandbox,
            seed=self.seed,
            cancelled=self.cancelled,
            claims=[claim_for(candidate_id) for candidate_id, _ in candidates],
            eval_seed=self.eval_seed,
        )
        infra = [
            (candidate_id, e)
            for (candidate_id, _), e in zip(candidates, evaluations, strict=True)
            if e.status == Status.INFRA
        ]
        if infra:
            with transaction(self.engine) as session:
                message = writes.log_infra_failure(session, self.campaign_id, *infra[0])
            raise SandboxInfraError(message)
        events = events or [None] * len(candidates)
        return [
            None if evaluation.status == Status.CANCELLED else self._write(i, evaluation, claim, e)
            for (i, _), evaluation, e in zip(candidates, evaluations, events, strict=True)
        ]

    def _write(
        self, candidate_id: int, evaluation: Evaluation, claim: SignatureClaim, event
    ) -> Recorded:
        """The verdict, its signature and its event in one transaction."""
        with transaction(self.engine) as session:
            candidate = writes.record_evaluation(session, candidate_id, evaluation)
            if claim is SignatureClaim.AFTER_RECORDING and evaluation.signature:
                writes.claim_signature(
                    session, self.campaign_id, candidate_id, evaluation.signature
                )
            if event is not None:
                fitness = "" if candidate.fitness is None else f", fitness {candidate.fitness:.3f}"
                writes.log_event(
                    session,
                    self.campaign_id,
                    event.kind,
                    f"{event.label}: {candidate.status}{fitness}",
                    {
                        "candidate_id": candidate.id,
                        "status": candidate.status,
                        "fitness": candidate.fitness,
                        "meta_test_fitness": candidate.meta_test_fitness,
                        "seconds": evaluation.seconds,
                        **event.data,
                    },
                )
        return Recorded(candidate, evaluation)
