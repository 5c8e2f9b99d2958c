"""Every write to the archive: new candidates and their model calls, evaluations, behaviour
signatures, events, island migrations, the campaign lock that serialises deduplication,
and the bulk fills that build synthetic archives for the benchmarks.

Each function works inside the caller's transaction (archive.db.transaction), so a caller
groups what must be written together; the lookups a write depends on come from
archive.reads, after the lock that makes them safe.
"""

from collections.abc import Callable

from sqlalchemy import func, insert, text, update
from sqlmodel import Session, SQLModel, col, select

from archive import reads
from archive.db import ADVISORY_NAMESPACE
from archive.fingerprint import code_hash
from archive.schema import (
    Campaign,
    Candidate,
    ESCheckpoint,
    EvaluationRound,
    Event,
    IslandMember,
    LLMCall,
    utcnow,
)
from sandbox.vocabulary import NO_VERDICT, CampaignStatus, Fidelity, Review, Status


def lock_campaign(session: Session, campaign_id: int) -> None:
    """Serialise, until this transaction ends, the steps that decide whether something is new
    to the campaign (add_candidate's code-hash check, claim_signature). SQLite's writers are
    serialised already (BEGIN IMMEDIATE). On PostgreSQL a transaction-scoped advisory lock
    keyed by the campaign makes a second writer wait for the first's commit, after which its
    READ COMMITTED reads see the first's row: simpler than a unique index (a candidate's
    status may later become duplicate) or SERIALIZABLE (retries in every caller), and
    campaigns sharing a database never wait on each other."""
    if session.connection().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(ADVISORY_NAMESPACE, campaign_id)))


def create_campaign(session: Session, *, note: str, data: dict | None = None, **fields) -> Campaign:
    """A new campaign row (name, task, budget, proposer, config) and its `created` event."""
    campaign = Campaign(**fields)
    session.add(campaign)
    session.flush()
    log_event(session, campaign.id, CampaignStatus.CREATED, note, data)
    return campaign


def set_config(session: Session, campaign: Campaign, config: dict) -> None:
    campaign.config = config


def add_checkpoint(session: Session, checkpoint: ESCheckpoint) -> None:
    session.add(checkpoint)


def log_event(
    session: Session,
    campaign_id: int,
    kind: str,
    message: str = "",
    data: dict | None = None,
    key: str | None = None,
) -> Event:
    """Append to the campaign's log; a `key` makes the event once-only (the database refuses
    a second one with the same key)."""
    event = Event(campaign_id=campaign_id, kind=kind, message=message, data=data or {}, key=key)
    session.add(event)
    session.flush()
    return event


# -- candidates --------------------------------------------------------------------------------


def add_candidate(
    session: Session,
    campaign: Campaign,
    *,
    code: str | None,
    origin: str,
    operator: str,
    island: int,
    generation: int,
    member_of: tuple[int, ...] | None = None,
    parent_id: int | None = None,
    inspiration_ids: list[int] | tuple[int, ...] = (),
    model: str | None = None,
    note: str = "",
    calls=(),
    baseline_name: str | None = None,
) -> Candidate:
    """A new candidate with its model calls. It is pending (to be evaluated) unless it has no
    code, or its normalised code is already in the campaign (then it is a duplicate of that)."""
    digest = code_hash(code) if code is not None else None
    status, duplicate_of = (Status.NO_CODE, None) if code is None else (Status.PENDING, None)
    if digest is not None:
        lock_campaign(session, campaign.id)
        earlier = reads.first_with_code(session, campaign.id, digest)
        if earlier is not None:
            status, duplicate_of = Status.DUPLICATE, earlier
    candidate = Candidate(
        campaign_id=campaign.id,
        task=campaign.task,
        code=code,
        code_hash=digest,
        origin=origin,
        operator=operator,
        baseline_name=baseline_name,
        parent_id=parent_id,
        inspiration_ids=list(inspiration_ids),
        duplicate_of=duplicate_of,
        island=island,
        generation=generation,
        model=model,
        proposal_note=note[:4000],
        prompt_tokens=sum(c.prompt_tokens for c in calls),
        completion_tokens=sum(c.completion_tokens for c in calls),
        cost_usd=sum(c.cost_usd for c in calls),
        status=status,
    )
    session.add(candidate)
    session.flush()
    for call in calls:
        session.add(
            LLMCall(
                campaign_id=campaign.id,
                candidate_id=candidate.id,
                model=call.model,
                messages=call.messages,
                response=call.response,
                prompt_tokens=call.prompt_tokens,
                completion_tokens=call.completion_tokens,
                cost_usd=call.cost_usd,
                seconds=call.seconds,
                attempts=call.attempts,
                error=call.error,
            )
        )
    if status == Status.PENDING:
        for member_island in member_of if member_of is not None else (island,):
            session.add(
                IslandMember(
                    campaign_id=campaign.id,
                    island=member_island,
                    candidate_id=candidate.id,
                    since_generation=generation,
                )
            )
    session.flush()
    return candidate


def record_evaluation(
    session: Session,
    candidate_id: int,
    evaluation,
    *,
    round: EvaluationRound | None = None,
    rank: Callable[[Candidate], float] | None = None,
) -> Candidate:
    """Store a cascade Evaluation on its candidate (with its `round`, the search's block of
    seeds, when scored), and its rank score (`rank`, default its fitness) on every island it
    lives on (the search strategy may then hold it: `hold`). The row is locked first
    (FOR NO KEY UPDATE on PostgreSQL, the lock the update takes anyway, which leaves children
    free to reference it; SQLite's write lock is held already), so of two evaluations of one
    candidate committed at once the second sees the first and fails."""
    if evaluation.status in NO_VERDICT:
        raise ValueError(
            f"an evaluation that ended {evaluation.status} is no verdict on "
            f"candidate {candidate_id}"
        )
    candidate = session.get(
        Candidate, candidate_id, with_for_update={"key_share": True}, populate_existing=True
    )
    if candidate.status != Status.PENDING:
        raise ValueError(f"candidate {candidate_id} was already evaluated ({candidate.status})")
    candidate.status = evaluation.status
    candidate.fitness = evaluation.fitness if evaluation.status == Status.OK else None
    candidate.meta_test_fitness = (
        evaluation.meta_test_fitness if evaluation.status == Status.OK else None
    )
    candidate.per_env = evaluation.per_env or {}
    candidate.stages = [s if isinstance(s, dict) else s.__dict__ for s in evaluation.stages]
    candidate.checks = evaluation.checks
    candidate.log_tail = evaluation.log_tail or ""
    candidate.backend = evaluation.backend
    candidate.eval_seconds = evaluation.seconds
    candidate.evaluated_at = utcnow()
    if evaluation.status == Status.DUPLICATE:
        candidate.duplicate_of = evaluation.duplicate_of
    if evaluation.status != Status.OK:
        session.add(candidate)
        _leave_islands(session, candidate_id)
        session.flush()
        return candidate
    candidate.fidelity = evaluation.fidelity
    if round is not None:
        round.candidate_id, round.campaign_id = candidate_id, candidate.campaign_id
        session.add(round)
        candidate.seeds = round.runs
    score = rank(candidate) if rank is not None else candidate.fitness
    session.add(candidate)
    _rank_on_islands(session, candidate_id, score)
    session.flush()
    return candidate


def record_round(
    session: Session,
    candidate_id: int,
    round: EvaluationRound,
    pooled: tuple[float, float | None, dict, int] | None,
    fidelity: Fidelity = Fidelity.FULL,
) -> Candidate:
    """Add a further round (a fresh block of seeds) to a scored candidate. `pooled` is what
    all its rounds now add up to (fitness, meta-test fitness, per-env results, seeds per
    env); None when this round failed, which ends the candidate's life as a parent: its
    status becomes the round's and it leaves its islands. A candidate that failed an earlier
    round only gains the round: it stays failed. A screened candidate given a round at full
    fidelity rests on the meta-test environments too from then on."""
    candidate = session.get(
        Candidate, candidate_id, with_for_update={"key_share": True}, populate_existing=True
    )
    round.candidate_id, round.campaign_id = candidate_id, candidate.campaign_id
    session.add(round)
    still_scored = candidate.status == Status.OK
    if still_scored and pooled is None:
        candidate.status, candidate.fitness, candidate.meta_test_fitness = round.status, None, None
        _leave_islands(session, candidate_id)
    elif still_scored:
        candidate.fitness, candidate.meta_test_fitness, candidate.per_env, candidate.seeds = pooled
        if fidelity == Fidelity.FULL:
            candidate.fidelity = Fidelity.FULL
    session.add(candidate)
    session.flush()
    return candidate


def hold(session: Session, candidate_id: int) -> None:
    """Promote a scored candidate: it waits, unranked on its islands (no parent, migrant or
    inspiration), for its re-evaluation on fresh seeds (`finish_review`)."""
    session.exec(update(Candidate).where(Candidate.id == candidate_id).values(review=Review.HELD))
    _rank_on_islands(session, candidate_id, None)


def finish_review(session: Session, candidate_id: int, score: float | None) -> None:
    """A held candidate's re-evaluation is complete: it ranks on its islands with `score`
    (None: its re-evaluation failed and it has left them)."""
    session.exec(update(Candidate).where(Candidate.id == candidate_id).values(review=Review.DONE))
    if score is not None:
        _rank_on_islands(session, candidate_id, score)


def rerank(session: Session, candidate_id: int, score: float) -> None:
    """A new rank score for a candidate that is not held (a baseline given another round)."""
    _rank_on_islands(session, candidate_id, score)


def _rank_on_islands(session: Session, candidate_id: int, score: float | None) -> None:
    session.exec(
        update(IslandMember).where(IslandMember.candidate_id == candidate_id).values(fitness=score)
    )


def _leave_islands(session: Session, candidate_id: int) -> None:
    """Only scored candidates can be parents; the rest leave their islands."""
    session.exec(IslandMember.__table__.delete().where(IslandMember.candidate_id == candidate_id))


def log_infra_failure(session: Session, campaign_id: int, candidate_id: int, evaluation) -> str:
    """Record that the sandbox itself failed under a candidate, which stays pending; returns
    the one-line message, for the console too."""
    reason = evaluation.stages[-1].detail if evaluation.stages else "no reason given"
    message = (
        f"candidate {candidate_id} left pending, the sandbox failed: {reason}; "
        "`scientist resume` retries it"
    )
    log_event(session, campaign_id, Status.INFRA, message, {"candidate_id": candidate_id})
    return message


def claim_signature(
    session: Session, campaign_id: int, candidate_id: int, signature: str
) -> int | None:
    """Give the candidate its behaviour signature unless an earlier candidate of the campaign
    behaves the same; then return that candidate's id and leave this one unsigned."""
    lock_campaign(session, campaign_id)
    earlier = reads.first_with_signature(session, campaign_id, signature, other_than=candidate_id)
    if earlier is not None:
        return earlier
    session.exec(update(Candidate).where(Candidate.id == candidate_id).values(signature=signature))
    return None


# -- islands -----------------------------------------------------------------------------------


def add_migrant(
    session: Session, campaign_id: int, candidate_id: int, source: int, target: int, generation: int
) -> IslandMember:
    """Make a member of island `source` a member of `target` too, from `generation` on, with
    the fitness it has there (a migration between islands)."""
    fitness = reads.membership(session, campaign_id, source, candidate_id).fitness
    member = IslandMember(
        campaign_id=campaign_id,
        island=target,
        candidate_id=candidate_id,
        since_generation=generation,
        migrated_from=source,
        fitness=fitness,
    )
    session.add(member)
    return member


# -- synthetic archives (benchmarks) -----------------------------------------------------------


def insert_rows(session: Session, table: type[SQLModel], rows: list[dict]) -> None:
    """Insert rows given as column dicts in one executemany, without model instances or
    checks (no deduplication, no island membership): for filling synthetic archives fast."""
    if rows:
        session.connection().execute(insert(table), rows)


def update_candidates(session: Session, campaign_id: int, status: str, values: dict) -> None:
    """Give every candidate of the campaign with this status the same column values, in one
    UPDATE (JSON values are serialised once)."""
    session.exec(
        update(Candidate)
        .where(Candidate.campaign_id == campaign_id, Candidate.status == status)
        .values(**values)
    )


def chain_parents(session: Session, campaign_id: int, stride: int) -> None:
    """Make each of the campaign's candidates the child of the candidate `stride` ids before
    it (a synthetic lineage: one generation per `stride` candidates)."""
    session.exec(
        update(Candidate)
        .where(Candidate.campaign_id == campaign_id, col(Candidate.id) > stride)
        .values(parent_id=Candidate.id - stride)
    )


def analyze(session: Session) -> None:
    """Refresh the query planner's statistics, as a long-lived archive would have them."""
    session.execute(text("ANALYZE"))
