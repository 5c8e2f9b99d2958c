"""The one path from an archived, pending candidate to its recorded verdict.

Whoever proposes a candidate (the campaign loop, the ES campaign rendering its mean network,
distillation) first writes it to the archive. Then `Recorder` hands its code, alone or in a
batch with others, to the executor (the sandbox cascade in this process, or a Ray task on a
cluster), which claims the candidate's behaviour signature in the archive before training,
so a duplicate stops early. The verdict is written in one transaction with the candidate
(and its event, if asked for), with the search's round of seeds; elite re-evaluations add
rounds on further blocks of seeds (`rounds`), pooled into the candidate's fitness
(scientist/search/seed_blocks.py). With `screening` a proposal's search round trains its
meta-train environments alone; its re-evaluation rounds (a promotion) and the baselines'
rounds train them all. An evaluation with no verdict leaves the candidate pending:
`cancelled` (the caller stopped) silently, `infra` (the sandbox itself failed) with an
event and SandboxInfraError.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from archive import reads, writes
from archive.db import Engine, Session, transaction
from archive.schema import Candidate
from harness.backends import SandboxInfraError
from harness.cascade import Evaluation, EvaluationRequest
from sandbox.budgets import get_budget
from sandbox.vocabulary import Fidelity, Origin, RankBy, Status
from scientist.executors.base import Executor
from scientist.search.seed_blocks import (
    SEARCH_BLOCK,
    SeedBlock,
    pooled,
    rank_score,
    round_record,
    seed_block,
    seed_variance,
)


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
        eval_seed: int | None = None,
        cancelled: Callable[[], bool] | None = None,
        rank_by: RankBy = RankBy.MEAN,
        tell: Callable[[Session, Candidate, float], None] | None = None,
        screening: bool = False,
    ):
        """`tell` (a search strategy's) hears each scored verdict in the transaction that
        records it, with its rank score; it may hold the candidate for promotion."""
        self.engine, self.campaign_id, self.executor = engine, campaign_id, executor
        self.task, self.budget, self.sandbox, self.seed = task, budget, sandbox, seed
        self.cancelled, self.rank_by, self.tell = cancelled, rank_by, tell
        self.screening = screening
        # Common random numbers for scoring too: every candidate this recorder scores is
        # evaluated on the same episodes. Never sent to a sandbox; a campaign keeps its own
        # in its archived settings, so its rounds stay paired across resumes.
        self.eval_seed = secrets.randbits(31) if eval_seed is None else eval_seed
        self.search_block = self.block(SEARCH_BLOCK)

    def block(self, index: int) -> SeedBlock:
        """Block `index` of this recorder's seeds (0: the search's)."""
        return seed_block(index, self.seed, self.eval_seed, get_budget(self.budget).seeds)

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

        evaluations: list[Evaluation | None] = [None] * len(candidates)
        fidelity = self._fidelities([candidate_id for candidate_id, _ in candidates])
        for level in Fidelity:  # one sandbox run per fidelity the batch holds
            group = [n for n, (i, _) in enumerate(candidates) if fidelity[i] is level]
            if group:
                done = self._evaluate(
                    [candidates[n] for n in group],
                    self.search_block,
                    [claim_for(candidates[n][0]) for n in group],
                    fidelity=level,
                )
                for n, evaluation in zip(group, done, strict=True):
                    evaluations[n] = evaluation
        events = events or [None] * len(candidates)
        recorded = [
            None if evaluation.status == Status.CANCELLED else self._write(i, evaluation, claim, e)
            for (i, _), evaluation, e in zip(candidates, evaluations, events, strict=True)
        ]
        if any(r and r.candidate.origin == Origin.BASELINE for r in recorded):
            self._rerank_baselines()
        return recorded

    def _rerank_baselines(self) -> None:
        """Baselines rank by the seed spread of them all: the first ones written saw none
        (they ranked at their bare fitness, above any candidate of the same score)."""
        with transaction(self.engine) as session:
            rank = self._rank(session)
            for baseline in reads.scored_baselines(session, self.campaign_id).values():
                writes.rerank(session, baseline.id, rank(baseline))

    def rounds(self, candidates: list[tuple[int, str]], blocks: list[SeedBlock]) -> list | None:
        """Train scored candidates again on further blocks of seeds, all in one batch run,
        and add each round to its candidate (pooled into its fitness); a baseline is
        re-ranked at once, a held candidate when `finish_review` says its rounds are
        complete. None when cancelled (nothing written). Raises SandboxInfraError like
        `batch`."""
        first, *further = blocks
        evaluations = self._evaluate(
            candidates, first, [None] * len(candidates), further, fidelity=Fidelity.FULL
        )
        if any(e.status == Status.CANCELLED for e in evaluations):
            return None
        recorded = []
        with transaction(self.engine) as session:
            for (candidate_id, _), evaluation in zip(candidates, evaluations, strict=True):
                per_block = evaluation.per_block()
                if len(per_block) != len(blocks):
                    raise RuntimeError(
                        f"the executor returned {len(per_block)} blocks of {len(blocks)}: "
                        "it must train `further_blocks` (harness.cascade.evaluate_batch)"
                    )
                candidate = reads.candidate(session, candidate_id)
                rounds = reads.rounds_of(session, [candidate_id])[candidate_id]
                for block, result in zip(blocks, per_block, strict=True):
                    rounds.append(round_record(block, result))
                    scored = result.status == Status.OK
                    total = pooled(candidate.per_env, rounds) if scored else None
                    candidate = writes.record_round(
                        session, candidate_id, rounds[-1], total, result.fidelity
                    )
                recorded.append(candidate)
            rank = self._rank(session)  # the baselines' seed spread, this job's rounds included
            for candidate in recorded:
                if candidate.origin == Origin.BASELINE and candidate.status == Status.OK:
                    writes.rerank(session, candidate.id, rank(candidate))
        return recorded

    def finish_review(self, candidate_ids: list[int]) -> None:
        """Held candidates whose re-evaluation rounds are all written rank again, by the
        pooled fitness."""
        with transaction(self.engine) as session:
            rank = self._rank(session)
            for candidate in reads.candidates_by_id(session, candidate_ids).values():
                scored = candidate.status == Status.OK
                writes.finish_review(session, candidate.id, rank(candidate) if scored else None)

    def _fidelities(self, candidate_ids: list[int]) -> dict[int, Fidelity]:
        """What each candidate's search round trains: proposals are screened when the
        recorder screens; baselines (the references every candidate is paired with) always
        train every environment."""
        if not self.screening:
            return dict.fromkeys(candidate_ids, Fidelity.FULL)
        with transaction(self.engine) as session:
            rows = reads.candidates_by_id(session, candidate_ids)
        return {
            i: Fidelity.FULL if i in rows and rows[i].origin == Origin.BASELINE else Fidelity.SCREEN
            for i in candidate_ids
        }

    def _evaluate(
        self,
        candidates: list[tuple[int, str]],
        block: SeedBlock,
        claims: list,
        further: list[SeedBlock] = (),
        *,
        fidelity: Fidelity,
    ):
        request = EvaluationRequest(
            self.task,
            [code for _, code in candidates],
            self.budget,
            sandbox=self.sandbox,
            seed=block.training_seed,
            eval_seed=block.eval_seed,
            further_blocks=[b.seeds for b in further],
            fidelity=fidelity,
            claims=claims,
            cancelled=self.cancelled,
        )
        evaluations = self.executor(request)
        infra = [
            (candidate_id, e)
            for (candidate_id, _), e in zip(candidates, evaluations, strict=True)
            if e.status == Status.INFRA
        ]
        if infra:
            with transaction(self.engine) as session:
                message = writes.log_infra_failure(session, self.campaign_id, *infra[0])
            raise SandboxInfraError(message)
        return evaluations

    def _rank(self, session) -> Callable[[Candidate], float]:
        """The rank score of a scored candidate, with the seed-to-seed variance the
        campaign's baselines show now."""
        baselines = reads.scored_baselines(session, self.campaign_id)
        rounds = reads.rounds_of(session, [c.id for c in baselines.values()])
        variance = seed_variance([r for rs in rounds.values() for r in rs])
        return lambda c: rank_score(c.fitness, max(c.seeds, 1), variance, self.rank_by)

    def _write(
        self, candidate_id: int, evaluation: Evaluation, claim: SignatureClaim, event
    ) -> Recorded:
        """The verdict, its signature and its event in one transaction."""
        with transaction(self.engine) as session:
            rank = self._rank(session)
            candidate = writes.record_evaluation(
                session,
                candidate_id,
                evaluation,
                round=round_record(self.search_block, evaluation),
                rank=rank,
            )
            if self.tell is not None and candidate.status == Status.OK:
                self.tell(session, candidate, rank(candidate))
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
