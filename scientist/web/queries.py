"""The reads behind the web pages, written for archives of 100,000+ candidates.

Lists are paginated and select only the columns they show (never code or per_env). The
fitness leaderboard is merged from island_member's (campaign, island, fitness) index, one
ordered stream per island, so a page costs about its own length. Aggregates that must read
every scored row (fitness per generation, meta-test ordering, sums) are memoised under a
fingerprint that changes whenever their inputs can: a candidate's scores are written once,
when its status leaves `pending`, so the status counts are such a fingerprint.
"""

import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from archive.schema import Campaign, Candidate, ESCheckpoint, Event, IslandMember, LLMCall

PAGE_SIZE = 50
SORTS = ("fitness", "meta_test", "id")
MAX_ANCESTORS = 200  # a lineage longer than this is cut (parent links could even form a loop)
MAX_CHILDREN = 200
SCATTER_POINTS = 2000  # above this many scored candidates the chart shows per-generation aggregates only
DEEP = 1000  # leaderboard positions beyond this come from a memoised full ordering, not the island merge
STALE_SECONDS = 30.0  # how old a whole-campaign aggregate may be while the campaign runs


@dataclass(frozen=True)
class Row:
    """A candidate in a list: what a table row shows."""

    id: int
    status: str
    fitness: float | None
    meta_test_fitness: float | None
    origin: str
    operator: str
    baseline_name: str | None
    generation: int
    island: int
    parent_id: int | None
    model: str | None
    cost_usd: float
    note: str
    campaign_id: int


ROW_COLUMNS = (Candidate.id, Candidate.status, Candidate.fitness, Candidate.meta_test_fitness, Candidate.origin,
               Candidate.operator, Candidate.baseline_name, Candidate.generation, Candidate.island,
               Candidate.parent_id, Candidate.model, Candidate.cost_usd,
               func.substr(Candidate.proposal_note, 1, 160), Candidate.campaign_id)


class Memo:
    """Results keyed by (name, campaign), kept while their fingerprint is unchanged, or,
    for the costly ones (max_stale > 0), for that many seconds after it changes: a running
    campaign changes its fingerprint every few seconds, and a page need not rescan 100,000
    rows each time."""

    def __init__(self, size: int = 256, clock: Callable[[], float] = time.monotonic):
        self.size, self.items, self.lock, self.clock = size, OrderedDict(), threading.Lock(), clock

    def get(self, key: Hashable, fingerprint: Hashable, compute: Callable[[], Any], max_stale: float = 0.0) -> Any:
        with self.lock:
            hit = self.items.get(key)
            if hit is not None and (hit[0] == fingerprint or self.clock() - hit[2] < max_stale):
                self.items.move_to_end(key)
                return hit[1]
        value = compute()
        with self.lock:
            self.items[key] = (fingerprint, value, self.clock())
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


# -- campaigns ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class IslandStats:
    island: int
    members: int
    scored: int
    best_id: int | None
    best_fitness: float | None
    migrants_in: int = 0


@dataclass(frozen=True)
class CampaignSummary:
    campaign: Campaign
    counts: dict[str, int]
    best_id: int | None
    best_fitness: float | None
    spent_usd: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def status_counts(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.exec(select(Candidate.status, func.count()).where(Candidate.campaign_id == campaign_id)
                        .group_by(Candidate.status)).all()
    return dict(sorted((status, int(n)) for status, n in rows))


def fingerprint(counts: dict[str, int]) -> tuple:
    return tuple(sorted(counts.items()))


def island_stats(session: Session, campaign_id: int) -> list[IslandStats]:
    """Members, scored members and the best one per island: a covering-index scan, then one
    index seek per island for its best."""
    rows = session.exec(select(IslandMember.island, func.count(), func.count(IslandMember.fitness))
                        .where(IslandMember.campaign_id == campaign_id).group_by(IslandMember.island)).all()
    stats = []
    for island, members, scored in rows:
        best = session.exec(_ranked(campaign_id, island, descending=True).limit(1)).first()
        stats.append(IslandStats(island, int(members), int(scored), best[0] if best else None,
                                 best[1] if best else None))
    return stats


def best_of(stats: list[IslandStats]) -> tuple[int | None, float | None]:
    scored = [s for s in stats if s.best_fitness is not None]
    if not scored:
        return None, None
    best = min(scored, key=lambda s: (-s.best_fitness, s.best_id))
    return best.best_id, best.best_fitness


def campaign_summaries(session: Session, memo: Memo) -> list[CampaignSummary]:
    summaries = []
    for campaign in session.exec(select(Campaign).order_by(col(Campaign.id).desc())).all():
        best_id, best_fitness = best_of(island_stats(session, campaign.id))
        summaries.append(CampaignSummary(campaign, status_counts(session, campaign.id), best_id, best_fitness,
                                         spending(session, memo, campaign.id).dollars))
    return summaries


# -- the leaderboard ---------------------------------------------------------------------------

def _ranked(campaign_id: int, island: int, *, descending: bool):
    order = col(IslandMember.fitness).desc() if descending else col(IslandMember.fitness).asc()
    return (select(IslandMember.candidate_id, IslandMember.fitness)
            .where(IslandMember.campaign_id == campaign_id, IslandMember.island == island,
                   col(IslandMember.fitness).is_not(None))
            .order_by(order, IslandMember.candidate_id))


def ranked_ids(session: Session, campaign_id: int, islands: Iterable[int], offset: int, limit: int,
               descending: bool = True) -> list[int]:
    """Scored candidates by fitness (ties by id), positions offset .. offset + limit.

    Each island's members come in fitness order straight from the index; the streams are
    merged and de-duplicated (baselines live on every island, migrants on two). Only the
    merged prefix up to the earliest place where a truncated stream stops is certain, so
    the streams are lengthened until that prefix covers the page."""
    islands, need, fetch = list(islands), offset + limit, offset + limit
    sign = -1.0 if descending else 1.0
    while True:
        streams = [list(session.exec(_ranked(campaign_id, i, descending=descending).limit(fetch)).all())
                   for i in islands]
        key = lambda row: (sign * row[1], row[0])  # noqa: E731
        # The certain prefix ends at the smallest last key among streams cut at `fetch`.
        cut = min((key(s[-1]) for s in streams if len(s) == fetch), default=None)
        seen, ordered = set(), []
        for row in heapq.merge(*streams, key=key):
            if cut is not None and key(row) > cut:
                break
            if row[0] not in seen:
                seen.add(row[0])
                ordered.append(row[0])
        if len(ordered) >= need or cut is None:
            return ordered[offset:need]
        fetch *= 2


def rows_by_id(session: Session, ids: list[int]) -> list[Row]:
    """Rows in the order of `ids` (missing ids left out)."""
    if not ids:
        return []
    found = {r[0]: Row(*r) for r in session.exec(select(*ROW_COLUMNS).where(col(Candidate.id).in_(ids))).all()}
    return [found[i] for i in ids if i in found]


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    number: int
    total: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def leaderboard(session: Session, memo: Memo, campaign_id: int, counts: dict[str, int], *, status: str = "ok",
                sort: str = "fitness", descending: bool = True, page: int = 1, size: int = PAGE_SIZE) -> Page:
    """One page of the campaign's candidates of a status: scored ones sortable by fitness,
    meta-test fitness or id; the others by id (newest first)."""
    total = counts.get(status, 0)
    page = max(1, min(page, max(1, -(-total // size))))
    offset = (page - 1) * size
    if status == "ok" and sort == "fitness" and offset < DEEP:
        islands = [s.island for s in island_stats_memo(session, memo, campaign_id, counts)]
        ids = ranked_ids(session, campaign_id, islands, offset, size, descending)
    elif status == "ok" and sort in ("fitness", "meta_test"):
        ordered = memo.get((sort, descending, campaign_id), fingerprint(counts),
                           lambda: _full_order(session, campaign_id, sort, descending), STALE_SECONDS)
        ids = ordered[offset:offset + size]
    else:
        # (campaign_id, status) index entries are in id order: no sort, the page is read directly.
        order = col(Candidate.id).desc() if descending else col(Candidate.id).asc()
        ids = list(session.exec(select(Candidate.id).where(Candidate.campaign_id == campaign_id,
                                                           Candidate.status == status)
                                .order_by(order).offset(offset).limit(size)).all())
    return Page(rows_by_id(session, ids), page, total, size)


def _full_order(session: Session, campaign_id: int, sort: str, descending: bool) -> list[int]:
    """Every scored candidate's id by fitness or meta-test fitness (ties by id, missing
    values last), for the pages no index can order cheaply."""
    column = Candidate.fitness if sort == "fitness" else Candidate.meta_test_fitness
    rows = session.exec(select(Candidate.id, column)
                        .where(Candidate.campaign_id == campaign_id, Candidate.status == "ok")).all()
    sign = -1.0 if descending else 1.0
    return [i for i, _ in sorted(rows, key=lambda r: (r[1] is None, sign * (r[1] or 0.0), r[0]))]


def island_stats_memo(session: Session, memo: Memo, campaign_id: int, counts: dict[str, int]) -> list[IslandStats]:
    # Memberships change with new candidates (counted) and migrations (new members: also counted).
    members = session.exec(select(func.count()).select_from(IslandMember)
                           .where(IslandMember.campaign_id == campaign_id)).one()
    return memo.get(("islands", campaign_id), (fingerprint(counts), members),
                    lambda: _with_migrants(session, campaign_id, island_stats(session, campaign_id)))


def _with_migrants(session: Session, campaign_id: int, stats: list[IslandStats]) -> list[IslandStats]:
    counts = dict(session.exec(select(IslandMember.island, func.count())
                               .where(IslandMember.campaign_id == campaign_id,
                                      col(IslandMember.migrated_from).is_not(None))
                               .group_by(IslandMember.island)).all())
    return [IslandStats(s.island, s.members, s.scored, s.best_id, s.best_fitness, int(counts.get(s.island, 0)))
            for s in stats]


@dataclass(frozen=True)
class Migrant:
    candidate_id: int
    source: int
    target: int
    generation: int
    fitness: float | None


def migrants(session: Session, memo: Memo, campaign_id: int, limit: int = 30) -> list[Migrant]:
    members = session.exec(select(func.count()).select_from(IslandMember)
                           .where(IslandMember.campaign_id == campaign_id)).one()

    def compute() -> list[Migrant]:
        rows = session.exec(select(IslandMember).where(IslandMember.campaign_id == campaign_id,
                                                       col(IslandMember.migrated_from).is_not(None))
                            .order_by(col(IslandMember.since_generation).desc(), IslandMember.island)
                            .limit(limit)).all()
        return [Migrant(m.candidate_id, m.migrated_from, m.island, m.since_generation, m.fitness) for m in rows]

    return memo.get(("migrants", campaign_id), members, compute, STALE_SECONDS)


# -- fitness over generations ------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationStat:
    generation: int
    scored: int
    best: float
    mean: float


@dataclass(frozen=True)
class Progression:
    generations: list[GenerationStat]
    points: list[tuple[int, float, int]] | None  # (generation, fitness, id) of every scored one, when few
    es: list[tuple[int, float | None, float | None]] = field(default_factory=list)  # ES checkpoints: best, mean


def progression(session: Session, memo: Memo, campaign_id: int, counts: dict[str, int]) -> Progression:
    """Best and mean fitness per generation, aggregated by the database."""

    def compute() -> Progression:
        scored = (Candidate.campaign_id == campaign_id, Candidate.status == "ok", col(Candidate.fitness).is_not(None))
        rows = session.exec(select(Candidate.generation, func.count(), func.max(Candidate.fitness),
                                   func.avg(Candidate.fitness)).where(*scored)
                            .group_by(Candidate.generation).order_by(Candidate.generation)).all()
        stats = [GenerationStat(int(g), int(n), float(best), float(mean)) for g, n, best, mean in rows]
        points = None
        if counts.get("ok", 0) <= SCATTER_POINTS:
            points = [(int(g), float(f), int(i)) for g, f, i in session.exec(
                select(Candidate.generation, Candidate.fitness, Candidate.id).where(*scored)).all()]
        return Progression(stats, points)

    result = memo.get(("progression", campaign_id), fingerprint(counts), compute, STALE_SECONDS)
    checkpoints = session.exec(select(func.count(), func.max(ESCheckpoint.generation))
                               .where(ESCheckpoint.campaign_id == campaign_id)).one()
    if checkpoints[0]:
        es = memo.get(("es", campaign_id), tuple(checkpoints), lambda: [
            (g, b, m) for g, b, m in session.exec(
                select(ESCheckpoint.generation, ESCheckpoint.best_fitness, ESCheckpoint.mean_fitness)
                .where(ESCheckpoint.campaign_id == campaign_id).order_by(ESCheckpoint.generation)).all()])
        result = Progression(result.generations, result.points, es)
    return result


# -- costs -------------------------------------------------------------------------------------

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


def spending(session: Session, memo: Memo, campaign_id: int) -> Spending:
    """Dollars and tokens of the campaign's model calls, per model. Calls are written once,
    so their count and newest id fingerprint the sum."""
    where = LLMCall.campaign_id == campaign_id
    stamp = tuple(session.exec(select(func.count(), func.max(LLMCall.id)).where(where)).one())

    def compute() -> Spending:
        rows = session.exec(select(LLMCall.model, func.count(), func.sum(LLMCall.prompt_tokens),
                                   func.sum(LLMCall.completion_tokens), func.sum(LLMCall.cost_usd),
                                   func.sum(LLMCall.seconds), func.count(LLMCall.error))
                            .where(where).group_by(LLMCall.model).order_by(LLMCall.model)).all()
        models = [ModelSpend(m, int(n), int(p or 0), int(c or 0), float(d or 0.0), float(s or 0.0), int(e))
                  for m, n, p, c, d, s, e in rows]
        return Spending(sum(m.dollars for m in models), models)

    return memo.get(("spending", campaign_id), stamp, compute) if stamp[0] else Spending()


@dataclass(frozen=True)
class Compute:
    sandbox_seconds: float
    es_training_runs: int
    es_env_steps: int
    es_seconds: float


def compute_spent(session: Session, memo: Memo, campaign_id: int, counts: dict[str, int]) -> Compute:
    def compute() -> Compute:
        seconds = session.exec(select(func.coalesce(func.sum(Candidate.eval_seconds), 0.0))
                               .where(Candidate.campaign_id == campaign_id)).one()
        runs, steps, es_seconds = session.exec(select(
            func.coalesce(func.sum(ESCheckpoint.training_runs), 0), func.coalesce(func.sum(ESCheckpoint.env_steps), 0),
            func.coalesce(func.sum(ESCheckpoint.wall_seconds), 0.0)).where(ESCheckpoint.campaign_id == campaign_id)).one()
        return Compute(float(seconds), int(runs), int(steps), float(es_seconds))

    checkpoints = session.exec(select(func.count()).where(ESCheckpoint.campaign_id == campaign_id)).one()
    return memo.get(("compute", campaign_id), (fingerprint(counts), checkpoints), compute, STALE_SECONDS)


def recent_events(session: Session, campaign_id: int, limit: int = 20) -> list[Event]:
    return list(session.exec(select(Event).where(Event.campaign_id == campaign_id)
                             .order_by(col(Event.id).desc()).limit(limit)).all())


# -- one candidate -----------------------------------------------------------------------------

def ancestors(session: Session, candidate: Candidate) -> list[Row]:
    """Parent, grandparent, ... up to the root: one recursive query over primary keys,
    bounded (parent links written by hand could even form a loop)."""
    if candidate.parent_id is None:
        return []
    chain = session.connection().execute(text(
        "WITH RECURSIVE chain(id, parent_id, depth) AS ("
        " SELECT id, parent_id, 1 FROM candidate WHERE id = :parent"
        " UNION ALL SELECT c.id, c.parent_id, chain.depth + 1 FROM candidate c JOIN chain ON c.id = chain.parent_id"
        " WHERE chain.depth < :limit)"
        " SELECT id FROM chain ORDER BY depth"), {"parent": candidate.parent_id, "limit": MAX_ANCESTORS}).scalars().all()
    seen, ids = {candidate.id}, []
    for i in chain:
        if i in seen:
            break
        seen.add(i)
        ids.append(i)
    return rows_by_id(session, ids)


class ChildIndex:
    """parent id -> child ids over the whole archive. candidate.parent_id has no index, and
    asking for one candidate's children would scan the table; parent links never change
    once written, so the map is built once and then extended with the rows added since
    (read again a little before the newest id seen: PostgreSQL can commit ids out of order)."""

    OVERLAP = 1000

    def __init__(self):
        self.children: dict[int, set[int]] = {}
        self.newest = 0
        self.lock = threading.Lock()

    def refresh(self, session: Session) -> None:
        newest = session.exec(select(func.max(Candidate.id))).one() or 0
        with self.lock:
            if newest == self.newest:
                return
            start = max(0, self.newest - self.OVERLAP)
            for child, parent in session.exec(select(Candidate.id, Candidate.parent_id)
                                              .where(Candidate.id > start, col(Candidate.parent_id).is_not(None))).all():
                self.children.setdefault(parent, set()).add(child)
            self.newest = max(self.newest, newest)

    def of(self, session: Session, candidate_id: int) -> list[int]:
        self.refresh(session)
        with self.lock:
            return sorted(self.children.get(candidate_id, ()))


def parent_code(session: Session, candidate: Candidate) -> str | None:
    if candidate.parent_id is None:
        return None
    return session.exec(select(Candidate.code).where(Candidate.id == candidate.parent_id)).first()


def calls_of(session: Session, candidate_id: int) -> list[LLMCall]:
    return list(session.exec(select(LLMCall).where(LLMCall.candidate_id == candidate_id).order_by(LLMCall.id)).all())


def candidates(session: Session, ids: list[int]) -> dict[int, Candidate]:
    return {c.id: c for c in session.exec(select(Candidate).where(col(Candidate.id).in_(ids))).all()}
