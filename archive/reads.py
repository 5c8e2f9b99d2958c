"""Every read of the archive: campaigns, candidates, counts, rankings, lineage, island
membership, fitness over generations, costs, model calls and events.

Each function runs inside the caller's session (archive.db.transaction for the CLI and the
campaign, a read-only Session for the web and the reports), so a caller decides what must be
read together. Each concept is read in one place, so the CLI, the web pages, the reports and
the campaign agree. Queries select only the columns their callers use where whole rows
would be costly (an archive may hold 100,000 candidates with curves and logs).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, case, func, literal_column
from sqlmodel import Session, col, select

from archive.schema import (
    Campaign,
    Candidate,
    ESCheckpoint,
    EvaluationRound,
    Event,
    IslandMember,
    LLMCall,
)
from sandbox.vocabulary import (
    DECIDED_WITHOUT_EVALUATION,
    FAILURES,
    NOT_EVALUATED,
    Origin,
    Review,
    Stage,
    Status,
)


class CampaignNotFound(LookupError):
    pass


# -- campaigns ---------------------------------------------------------------------------------


def campaign_by_id(session: Session, campaign_id: int) -> Campaign | None:
    return session.get(Campaign, campaign_id)


def find_campaign(session: Session, name: str) -> Campaign | None:
    """The campaign of that name, or None (names are unique)."""
    return session.exec(select(Campaign).where(Campaign.name == name)).first()


def get_campaign(session: Session, name: str) -> Campaign:
    """The campaign of that name; CampaignNotFound, naming the ones there are, otherwise."""
    campaign = find_campaign(session, name)
    if campaign is None:
        names = session.exec(select(Campaign.name).order_by(Campaign.id)).all()
        raise CampaignNotFound(
            f"no campaign named {name!r} in this archive"
            + (f"; it has {', '.join(names)}" if names else "; it has none yet")
        )
    return campaign


def campaigns(session: Session, task: str | None = None) -> list[Campaign]:
    """Every campaign (or every one on `task`), oldest first."""
    query = select(Campaign).order_by(Campaign.id)
    return list(
        session.exec(query.where(Campaign.task == task) if task is not None else query).all()
    )


def campaigns_producing(session: Session, campaign_ids: list[int], origin: str) -> set[int]:
    """Which of the campaigns proposed at least one candidate of `origin` (whatever became of
    it): the searches whose cost a best candidate of that origin is charged with."""
    return set(
        session.exec(
            select(Candidate.campaign_id)
            .distinct()
            .where(col(Candidate.campaign_id).in_(campaign_ids), Candidate.origin == origin)
        ).all()
    )


# -- candidates --------------------------------------------------------------------------------


def candidate(session: Session, candidate_id: int) -> Candidate | None:
    return session.get(Candidate, candidate_id)


def candidates(session: Session, campaign_id: int) -> list[Candidate]:
    """Every candidate of the campaign, full rows, in id order."""
    return list(
        session.exec(
            select(Candidate).where(Candidate.campaign_id == campaign_id).order_by(Candidate.id)
        ).all()
    )


def candidates_by_id(session: Session, ids: list[int]) -> dict[int, Candidate]:
    """Full rows of the candidates with these ids (missing ids are left out)."""
    if not ids:
        return {}
    return {
        c.id: c for c in session.exec(select(Candidate).where(col(Candidate.id).in_(ids))).all()
    }


def pending_candidates(session: Session, campaign_id: int) -> list[Candidate]:
    """The campaign's candidates still to be evaluated, oldest first."""
    return list(
        session.exec(
            select(Candidate)
            .where(Candidate.campaign_id == campaign_id, Candidate.status == Status.PENDING)
            .order_by(Candidate.id)
        ).all()
    )


def candidates_in_review(session: Session, campaign_id: int, review: Review) -> list[Candidate]:
    """Scored candidates at this stage of elite re-evaluation (held, or done), oldest first."""
    return list(
        session.exec(
            select(Candidate)
            .where(
                Candidate.campaign_id == campaign_id,
                Candidate.status == Status.OK,
                Candidate.review == review,
            )
            .order_by(Candidate.id)
        ).all()
    )


def reevaluated_proposal_count(session: Session, campaign_id: int) -> int:
    """Proposed (not baseline) candidates of a campaign that have been re-evaluated: the
    candidates its labels are tested on."""
    return session.exec(
        select(func.count())
        .select_from(Candidate)
        .where(
            Candidate.campaign_id == campaign_id,
            Candidate.status == Status.OK,
            Candidate.review == Review.DONE,
            Candidate.origin != Origin.BASELINE,
        )
    ).one()


def scored_baselines(session: Session, campaign_id: int) -> dict[str, Candidate]:
    """The campaign's scored baselines by name (ppo, dpo, ...)."""
    rows = session.exec(
        select(Candidate).where(
            Candidate.campaign_id == campaign_id,
            Candidate.origin == Origin.BASELINE,
            Candidate.status == Status.OK,
        )
    ).all()
    return {c.baseline_name: c for c in rows if c.baseline_name}


# -- evaluation rounds -------------------------------------------------------------------------


def rounds_of(session: Session, candidate_ids: list[int]) -> dict[int, list[EvaluationRound]]:
    """Each candidate's evaluation rounds, by block ([] for a candidate with none)."""
    found: dict[int, list[EvaluationRound]] = {i: [] for i in candidate_ids}
    if candidate_ids:
        query = (
            select(EvaluationRound)
            .where(col(EvaluationRound.candidate_id).in_(candidate_ids))
            .order_by(EvaluationRound.candidate_id, EvaluationRound.block)
        )
        for row in session.exec(query).all():
            found[row.candidate_id].append(row)
    return found


def first_candidate(
    session: Session, campaign_id: int, *, origin: str, operator: str, generation: int
) -> Candidate | None:
    """The earliest candidate of the campaign made by this origin and operator in this
    generation (how a resumed ES campaign finds the mean it rendered already)."""
    return session.exec(
        select(Candidate)
        .where(
            Candidate.campaign_id == campaign_id,
            Candidate.origin == origin,
            Candidate.operator == operator,
            Candidate.generation == generation,
        )
        .order_by(Candidate.id)
    ).first()


def first_with_code(session: Session, campaign_id: int, code_hash: str) -> int | None:
    """The earliest non-duplicate candidate of the campaign with this normalised code."""
    return session.exec(
        select(Candidate.id)
        .where(
            Candidate.campaign_id == campaign_id,
            Candidate.code_hash == code_hash,
            Candidate.status != Status.DUPLICATE,
        )
        .order_by(Candidate.id)
    ).first()


def first_with_signature(
    session: Session, campaign_id: int, signature: str, other_than: int
) -> int | None:
    """The earliest candidate of the campaign, other than `other_than`, with this behaviour."""
    return session.exec(
        select(Candidate.id)
        .where(
            Candidate.campaign_id == campaign_id,
            Candidate.signature == signature,
            Candidate.id != other_than,
        )
        .order_by(Candidate.id)
    ).first()


def code_of(session: Session, candidate_id: int) -> str | None:
    """A candidate's source alone (None when it has none, or there is no such candidate)."""
    return session.exec(select(Candidate.code).where(Candidate.id == candidate_id)).first()


def fitness_of(session: Session, candidate_id: int | None) -> float | None:
    """A candidate's meta-train fitness (None unscored, or for no candidate at all)."""
    if candidate_id is None:
        return None
    return session.exec(select(Candidate.fitness).where(Candidate.id == candidate_id)).first()


class Provenance(NamedTuple):
    id: int
    origin: str
    operator: str
    baseline_name: str | None


def provenance(session: Session, campaign_id: int) -> list[Provenance]:
    """How each of the campaign's candidates was made (what a label says), without the rows."""
    rows = session.exec(
        select(Candidate.id, Candidate.origin, Candidate.operator, Candidate.baseline_name)
        .where(Candidate.campaign_id == campaign_id)
        .order_by(Candidate.id)
    ).all()
    return [Provenance(*row) for row in rows]


def backends(session: Session, campaign_id: int) -> list[str]:
    """The sandboxes the campaign's evaluations ran in, sorted."""
    return sorted(
        session.exec(
            select(Candidate.backend)
            .distinct()
            .where(Candidate.campaign_id == campaign_id, Candidate.backend != "")
        ).all()
    )


def last_evaluated_at(session: Session, campaign_id: int) -> datetime | None:
    """When the campaign's newest evaluation was recorded (None before the first)."""
    return session.exec(
        select(func.max(Candidate.evaluated_at)).where(Candidate.campaign_id == campaign_id)
    ).one()


# -- lineage -----------------------------------------------------------------------------------


def lineage(session: Session, candidate_id: int, limit: int) -> list[int]:
    """Ids from the candidate back towards its root ancestor, the candidate first, at most
    `limit` of them: one recursive query over primary keys, bounded and cut at the first id
    seen twice, since parent links written by hand could even form a loop."""
    chain = (
        select(Candidate.id, Candidate.parent_id, literal_column("1").label("depth"))
        .where(Candidate.id == candidate_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(Candidate.id, Candidate.parent_id, chain.c.depth + literal_column("1"))
        .join(chain, Candidate.id == chain.c.parent_id)
        .where(chain.c.depth < limit)
    )
    ids, seen = [], set()
    for i in session.exec(select(chain.c.id).order_by(chain.c.depth)).all():
        if i in seen:
            break
        seen.add(i)
        ids.append(i)
    return ids


def newest_candidate_id(session: Session) -> int:
    """The highest candidate id in the archive (0 when empty)."""
    return session.exec(select(func.max(Candidate.id))).one() or 0


def parent_links(session: Session, after_id: int) -> list[tuple[int, int]]:
    """(child, parent) of every candidate with a parent and an id above `after_id`:
    candidate.parent_id has no index, so children are found from these links in bulk."""
    return [
        (child, parent)
        for child, parent in session.exec(
            select(Candidate.id, Candidate.parent_id).where(
                Candidate.id > after_id, col(Candidate.parent_id).is_not(None)
            )
        ).all()
    ]


# -- counts ------------------------------------------------------------------------------------


def status_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Candidates per status, statuses in alphabetical order."""
    rows = session.exec(
        select(Candidate.status, func.count())
        .where(Candidate.campaign_id == campaign_id)
        .group_by(Candidate.status)
    ).all()
    return dict(sorted((status, int(n)) for status, n in rows))


def proposal_count(session: Session, campaign_id: int) -> int:
    """How many candidates the campaign's proposer made (baselines are not proposals)."""
    return session.exec(
        select(func.count())
        .select_from(Candidate)
        .where(Candidate.campaign_id == campaign_id, Candidate.origin != Origin.BASELINE)
    ).one()


def slot_counts(session: Session, campaign_id: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(generation, island) -> (proposals with code that was new, all proposals)."""
    useful = func.sum(case((col(Candidate.status).in_(DECIDED_WITHOUT_EVALUATION), 0), else_=1))
    rows = session.exec(
        select(Candidate.generation, Candidate.island, useful, func.count())
        .where(Candidate.campaign_id == campaign_id, Candidate.origin != Origin.BASELINE)
        .group_by(Candidate.generation, Candidate.island)
    ).all()
    return {(g, i): (int(u or 0), int(n)) for g, i, u, n in rows}


# -- rankings ----------------------------------------------------------------------------------

SCORED = (
    Candidate.status == Status.OK,
    col(Candidate.fitness).is_not(None),
)  # evaluated ok, with a fitness
BY_FITNESS = (col(Candidate.fitness).desc(), Candidate.id)  # best first, ties by id


def leaderboard(session: Session, campaign_id: int, top: int | None = 10) -> list[Candidate]:
    """The best `top` scored candidates (all of them for None), full rows, best first."""
    query = (
        select(Candidate).where(Candidate.campaign_id == campaign_id, *SCORED).order_by(*BY_FITNESS)
    )
    return list(session.exec(query.limit(top) if top else query).all())


class Ranked(NamedTuple):
    id: int
    origin: str
    code_hash: str | None


def ranking(session: Session, campaign_id: int, top: int | None = None) -> list[Ranked]:
    """The leaderboard's order without the rows: id, origin and code hash of the best `top`
    scored candidates (all for None), best first."""
    query = (
        select(Candidate.id, Candidate.origin, Candidate.code_hash)
        .where(Candidate.campaign_id == campaign_id, *SCORED)
        .order_by(*BY_FITNESS)
    )
    return [Ranked(*row) for row in session.exec(query.limit(top) if top else query).all()]


def best_of_origin(session: Session, campaign_ids: list[int], origin: str) -> Candidate | None:
    """The best scored candidate of `origin` across the campaigns (ties by id)."""
    return session.exec(
        select(Candidate)
        .where(col(Candidate.campaign_id).in_(campaign_ids), Candidate.origin == origin, *SCORED)
        .order_by(*BY_FITNESS)
        .limit(1)
    ).first()


# -- islands -----------------------------------------------------------------------------------


def _scored_members(campaign_id: int, island: int):
    """The condition for a member of the island with a fitness."""
    return (
        IslandMember.campaign_id == campaign_id,
        IslandMember.island == island,
        col(IslandMember.fitness).is_not(None),
    )


def _members_by_fitness(campaign_id: int, island: int, *columns, descending: bool = True):
    """An island's scored members in fitness order (ties by id) straight from the
    (campaign, island, fitness) index."""
    order = col(IslandMember.fitness).desc() if descending else col(IslandMember.fitness).asc()
    return (
        select(*columns)
        .where(*_scored_members(campaign_id, island))
        .order_by(order, IslandMember.candidate_id)
    )


def scored_member_count(session: Session, campaign_id: int, island: int) -> int:
    """How many of the island's members have a fitness (the ones parents are drawn from)."""
    return session.exec(
        select(func.count()).select_from(IslandMember).where(*_scored_members(campaign_id, island))
    ).one()


def ranked_members(
    session: Session, campaign_id: int, island: int, limit: int, descending: bool = True
) -> list[tuple[int, float]]:
    """(candidate id, fitness) of the island's first `limit` scored members in fitness order."""
    query = _members_by_fitness(
        campaign_id, island, IslandMember.candidate_id, IslandMember.fitness, descending=descending
    )
    return [(i, f) for i, f in session.exec(query.limit(limit)).all()]


def enters_top(session: Session, candidate: Candidate, k: int) -> bool:
    """Would the candidate's search fitness rank among the best k of any island it lives on?
    Every member is compared by its search block's fitness (block 0: the same seeds and
    episodes for all, so the comparison is paired), whatever rounds it has had since, and
    held members count too (unranked until re-evaluated; left out, every member of a batch
    scored at once would enter a top k of the others). Rank scores would not do: a
    baseline's pooled lower bound rests on many seeds, a newcomer's on its first block, so
    a newcomer would never be promoted past well-measured baselines."""
    search_round = and_(
        EvaluationRound.candidate_id == IslandMember.candidate_id, EvaluationRound.block == 0
    )
    search_fitness = func.coalesce(EvaluationRound.fitness, Candidate.fitness)
    islands = session.exec(
        select(IslandMember.island).where(IslandMember.candidate_id == candidate.id)
    ).all()
    for island in islands:
        above = session.exec(
            select(func.count())
            .select_from(IslandMember)
            .join(Candidate, Candidate.id == IslandMember.candidate_id)
            .outerjoin(EvaluationRound, search_round)
            .where(
                IslandMember.campaign_id == candidate.campaign_id,
                IslandMember.island == island,
                IslandMember.candidate_id != candidate.id,
                Candidate.status == Status.OK,
                search_fitness > candidate.fitness,
            )
        ).one()
        if above < k:
            return True
    return False


def member_at_rank(session: Session, campaign_id: int, island: int, rank: int) -> int | None:
    """The id of the island's scored member at this fitness rank (0: the best)."""
    query = _members_by_fitness(campaign_id, island, IslandMember.candidate_id)
    return session.exec(query.offset(rank).limit(1)).first()


def best_member_ids(
    session: Session, campaign_id: int, island: int, k: int, absent_from: int | None = None
) -> list[int]:
    """The ids of the island's best k scored members, best first; with `absent_from`, the
    best k of those that are not members of that island (a migration's candidates: where
    the baselines seed every island, its best are everywhere already)."""
    query = _members_by_fitness(campaign_id, island, IslandMember.candidate_id)
    if absent_from is not None:
        there = select(IslandMember.candidate_id).where(
            IslandMember.campaign_id == campaign_id, IslandMember.island == absent_from
        )
        query = query.where(col(IslandMember.candidate_id).not_in(there))
    return list(session.exec(query.limit(k)).all())


def membership(
    session: Session, campaign_id: int, island: int, candidate_id: int
) -> IslandMember | None:
    """The candidate's membership of the island, if it lives there."""
    return session.get(IslandMember, (campaign_id, island, candidate_id))


def member_count(session: Session, campaign_id: int) -> int:
    """Memberships over all the campaign's islands (it grows with candidates and migrations)."""
    return session.exec(
        select(func.count())
        .select_from(IslandMember)
        .where(IslandMember.campaign_id == campaign_id)
    ).one()


def recent_failure_ids(session: Session, campaign_id: int, island: int, k: int) -> list[int]:
    """The island's k newest candidates that failed an evaluation (baselines aside), newest
    first."""
    return list(
        session.exec(
            select(Candidate.id)
            .where(
                Candidate.campaign_id == campaign_id,
                Candidate.island == island,
                col(Candidate.status).in_(FAILURES),
                Candidate.origin != Origin.BASELINE,
            )
            .order_by(col(Candidate.id).desc())
            .limit(k)
        ).all()
    )


@dataclass(frozen=True)
class IslandStats:
    island: int
    members: int
    scored: int
    best_id: int | None
    best_fitness: float | None
    migrants_in: int = 0


def island_stats(session: Session, campaign_id: int) -> list[IslandStats]:
    """Members, scored members, migrants received and the best member of each island: two
    covering-index scans, then one index seek per island for its best."""
    rows = session.exec(
        select(IslandMember.island, func.count(), func.count(IslandMember.fitness))
        .where(IslandMember.campaign_id == campaign_id)
        .group_by(IslandMember.island)
        .order_by(IslandMember.island)
    ).all()
    migrants = dict(
        session.exec(
            select(IslandMember.island, func.count())
            .where(
                IslandMember.campaign_id == campaign_id,
                col(IslandMember.migrated_from).is_not(None),
            )
            .group_by(IslandMember.island)
        ).all()
    )
    stats = []
    for island, members, scored in rows:
        best = ranked_members(session, campaign_id, island, 1)
        stats.append(
            IslandStats(
                island,
                int(members),
                int(scored),
                best[0][0] if best else None,
                best[0][1] if best else None,
                int(migrants.get(island, 0)),
            )
        )
    return stats


def best_of(stats: list[IslandStats]) -> tuple[int | None, float | None]:
    """The best member over all islands, (id, fitness), from their stats (ties by id)."""
    scored = [s for s in stats if s.best_fitness is not None]
    if not scored:
        return None, None
    best = min(scored, key=lambda s: (-s.best_fitness, s.best_id))
    return best.best_id, best.best_fitness


@dataclass(frozen=True)
class Migrant:
    candidate_id: int
    source: int
    target: int
    generation: int
    fitness: float | None


def recent_migrants(session: Session, campaign_id: int, limit: int) -> list[Migrant]:
    """The latest `limit` moves between islands, newest generation first."""
    rows = session.exec(
        select(IslandMember)
        .where(
            IslandMember.campaign_id == campaign_id, col(IslandMember.migrated_from).is_not(None)
        )
        .order_by(col(IslandMember.since_generation).desc(), IslandMember.island)
        .limit(limit)
    ).all()
    return [
        Migrant(m.candidate_id, m.migrated_from, m.island, m.since_generation, m.fitness)
        for m in rows
    ]


# -- fitness over generations ------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationStat:
    """One generation of a campaign. best, mean and median are over its scored candidates
    (None when it has none); `evaluated` counts every evaluation's verdict, failures too."""

    generation: int
    scored: int
    best: float | None
    mean: float | None
    median: float | None = None
    evaluated: int | None = None


@dataclass(frozen=True)
class Progression:
    generations: list[GenerationStat]
    points: (
        list[tuple[int, float, int]] | None
    )  # (generation, fitness, id) of every scored one, when few
    es: list[tuple[int, float | None, float | None]] = field(
        default_factory=list
    )  # ES checkpoints: best, mean


def progression(session: Session, campaign_id: int, max_points: int = 0) -> Progression:
    """Per generation (every one with a candidate, in order): evaluated and scored counts and
    the best, mean and median fitness, aggregated by the database; plus each scored
    candidate's (generation, fitness, id) when there are at most `max_points` of them."""
    scored = and_(Candidate.campaign_id == campaign_id, *SCORED)
    fitness = case((scored, Candidate.fitness))  # NULL unless scored: the aggregates skip it
    evaluated = func.sum(case((col(Candidate.status).in_(NOT_EVALUATED), 0), else_=1))
    rows = session.exec(
        select(
            Candidate.generation,
            evaluated,
            func.count(fitness),
            func.max(fitness),
            func.avg(fitness),
        )
        .where(Candidate.campaign_id == campaign_id)
        .group_by(Candidate.generation)
        .order_by(Candidate.generation)
    ).all()
    medians = _median_fitness(session, campaign_id)
    stats = [
        GenerationStat(int(g), int(n), _float(best), _float(mean), medians.get(int(g)), int(e or 0))
        for g, e, n, best, mean in rows
    ]
    points = None
    if sum(s.scored for s in stats) <= max_points:
        points = [
            (int(g), float(f), int(i))
            for g, f, i in session.exec(
                select(Candidate.generation, Candidate.fitness, Candidate.id)
                .where(scored)
                .order_by(Candidate.id)
            ).all()
        ]
    return Progression(stats, points)


def _median_fitness(session: Session, campaign_id: int) -> dict[int, float]:
    """generation -> median fitness of its scored candidates (the mean of the middle two for
    an even count), with window functions: SQLite and PostgreSQL share no median aggregate."""
    ranked = (
        select(
            Candidate.generation,
            Candidate.fitness,
            func.row_number()
            .over(partition_by=Candidate.generation, order_by=Candidate.fitness)
            .label("rank"),
            func.count().over(partition_by=Candidate.generation).label("n"),
        )
        .where(Candidate.campaign_id == campaign_id, *SCORED)
        .subquery()
    )
    middle = and_(2 * ranked.c.rank >= ranked.c.n, 2 * ranked.c.rank <= ranked.c.n + 2)
    rows = session.exec(
        select(ranked.c.generation, func.avg(ranked.c.fitness))
        .where(middle)
        .group_by(ranked.c.generation)
    ).all()
    return {int(g): float(m) for g, m in rows}


def _float(value) -> float | None:
    """An aggregate's value as a float; None (no rows to aggregate) stays None."""
    return None if value is None else float(value)


# -- evolution strategies ----------------------------------------------------------------------


def latest_es_checkpoint(session: Session, campaign_id: int) -> ESCheckpoint | None:
    """The ES state after the newest completed generation (where a campaign resumes)."""
    return session.exec(
        select(ESCheckpoint)
        .where(ESCheckpoint.campaign_id == campaign_id)
        .order_by(col(ESCheckpoint.generation).desc())
    ).first()


def es_checkpoint(session: Session, campaign_id: int, generation: int) -> ESCheckpoint | None:
    """The ES state and population scores after that generation, if it was completed."""
    return session.exec(
        select(ESCheckpoint).where(
            ESCheckpoint.campaign_id == campaign_id, ESCheckpoint.generation == generation
        )
    ).first()


def es_checkpoints(session: Session, campaign_id: int) -> list[ESCheckpoint]:
    """Every checkpoint of an ES campaign, generation by generation."""
    return list(
        session.exec(
            select(ESCheckpoint)
            .where(ESCheckpoint.campaign_id == campaign_id)
            .order_by(ESCheckpoint.generation)
        ).all()
    )


def es_generations(
    session: Session, campaign_id: int
) -> list[tuple[int, float | None, float | None]]:
    """(generation, best, mean) of the ES population's fitness, generation by generation."""
    return [
        (int(g), b, m)
        for g, b, m in session.exec(
            select(ESCheckpoint.generation, ESCheckpoint.best_fitness, ESCheckpoint.mean_fitness)
            .where(ESCheckpoint.campaign_id == campaign_id)
            .order_by(ESCheckpoint.generation)
        ).all()
    ]


def es_totals(session: Session, campaign_id: int) -> dict:
    """Generations completed, training runs, environment steps and wall seconds over all of
    an ES campaign's checkpoints (zeros for any other campaign). A JSON-ready dict, as the
    es_budget event stores it; dollars are 0: an ES generation calls no model."""
    runs, steps, seconds, count = session.exec(
        select(
            func.coalesce(func.sum(ESCheckpoint.training_runs), 0),
            func.coalesce(func.sum(ESCheckpoint.env_steps), 0),
            func.coalesce(func.sum(ESCheckpoint.wall_seconds), 0.0),
            func.count(),
        ).where(ESCheckpoint.campaign_id == campaign_id)
    ).one()
    return {
        "generations": int(count),
        "training_runs": int(runs),
        "env_steps": int(steps),
        "wall_seconds": float(seconds),
        "dollars": 0.0,
    }


# -- costs -------------------------------------------------------------------------------------


def spent_usd(session: Session, campaign_id: int) -> float:
    """Dollars of every model call the campaign made."""
    return float(
        session.exec(
            select(func.coalesce(func.sum(LLMCall.cost_usd), 0.0)).where(
                LLMCall.campaign_id == campaign_id
            )
        ).one()
    )


@dataclass(frozen=True)
class ModelSpend:
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    dollars: float
    seconds: float
    errors: int


@dataclass(frozen=True)
class Spending:
    dollars: float = 0.0
    models: list[ModelSpend] = field(default_factory=list)


def call_stamp(session: Session, campaign_id: int) -> tuple[int, int | None]:
    """(number of the campaign's model calls, newest call id): calls are written once, so
    this changes whenever any sum over them can."""
    return tuple(
        session.exec(
            select(func.count(), func.max(LLMCall.id)).where(LLMCall.campaign_id == campaign_id)
        ).one()
    )


def model_spending(session: Session, campaign_id: int) -> Spending:
    """Calls, tokens, dollars, seconds and errors of the campaign's model calls, per model."""
    rows = session.exec(
        select(
            LLMCall.model,
            func.count(),
            func.sum(LLMCall.prompt_tokens),
            func.sum(LLMCall.completion_tokens),
            func.sum(LLMCall.cost_usd),
            func.sum(LLMCall.seconds),
            func.count(LLMCall.error),
        )
        .where(LLMCall.campaign_id == campaign_id)
        .group_by(LLMCall.model)
        .order_by(LLMCall.model)
    ).all()
    models = [
        ModelSpend(m, int(n), int(p or 0), int(c or 0), float(d or 0.0), float(s or 0.0), int(e))
        for m, n, p, c, d, s, e in rows
    ]
    return Spending(sum(m.dollars for m in models), models)


def sandbox_seconds(session: Session, campaign_id: int) -> float:
    """Wall seconds the sandbox spent evaluating the campaign's candidates, re-evaluations
    included."""
    searched = session.exec(
        select(func.coalesce(func.sum(Candidate.eval_seconds), 0.0)).where(
            Candidate.campaign_id == campaign_id
        )
    ).one()
    return float(searched) + reevaluation_cost(session, campaign_id)[1]


def reevaluation_cost(session: Session, campaign_id: int) -> tuple[int, float]:
    """Rounds trained on fresh seeds (elites and their paired baselines) and their sandbox
    seconds."""
    count, seconds = session.exec(
        select(func.count(), func.coalesce(func.sum(EvaluationRound.seconds), 0.0)).where(
            EvaluationRound.campaign_id == campaign_id, EvaluationRound.block > 0
        )
    ).one()
    return int(count), float(seconds)


def fully_trained_count(session: Session, campaign_id: int) -> int:
    """How many of the campaign's candidates reached the full training stage (each trained
    every seed on every environment of the campaign's budget). Reads the stages column alone:
    a campaign's full rows (curves, logs) can run to gigabytes."""
    return sum(
        any(s.get("name") == Stage.FULL for s in stages)
        for stages in session.exec(
            select(Candidate.stages).where(Candidate.campaign_id == campaign_id)
        ).all()
    )


# -- model calls and events --------------------------------------------------------------------


def calls_of(session: Session, candidate_id: int) -> list[LLMCall]:
    """The model calls that made a candidate, in the order they were made."""
    return list(
        session.exec(
            select(LLMCall).where(LLMCall.candidate_id == candidate_id).order_by(LLMCall.id)
        ).all()
    )


def events(session: Session, campaign_id: int, limit: int = 20) -> list[Event]:
    """The campaign's latest `limit` events, oldest of them first."""
    rows = session.exec(
        select(Event)
        .where(Event.campaign_id == campaign_id)
        .order_by(col(Event.id).desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def has_event(session: Session, campaign_id: int, key: str) -> bool:
    """Whether the once-only event with this key (a migration, the baselines) happened."""
    return (
        session.exec(
            select(Event.id).where(Event.campaign_id == campaign_id, Event.key == key)
        ).first()
        is not None
    )
