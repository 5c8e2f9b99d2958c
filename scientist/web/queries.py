"""The web pages' caching and paging over archive.reads, for archives of 100,000+ candidates.

Paging: lists select only the columns they show (never code or per_env). The fitness
leaderboard is merged from island_member's (campaign, island, fitness) index, one ordered
stream per island, so a page costs about its own length; deep pages and the meta-test order
come from a memoised full ordering.

Caching: aggregates that must read every scored row (fitness per generation, meta-test
ordering, sums) are memoised under a fingerprint that changes whenever their inputs can: a
candidate's scores are written once, when its status leaves `pending`, so the status counts
are such a fingerprint. Every other read comes from archive.reads.
"""

import dataclasses
import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from archive import readable, reads
from archive.db import Session
from archive.readable import Row
from archive.reads import IslandStats, Migrant, Progression, Spending
from archive.schema import Campaign
from sandbox.vocabulary import Status

PAGE_SIZE = 50
SORTS = ("fitness", "meta_test", "id")
SCATTER_POINTS = (
    2000  # above this many scored candidates the chart shows per-generation aggregates only
)
# leaderboard positions beyond this come from a memoised full ordering, not the island merge
DEEP = 1000
STALE_SECONDS = 30.0  # how old a whole-campaign aggregate may be while the campaign runs


class Memo:
    """Results keyed by (name, campaign), kept while their fingerprint is unchanged, or,
    for the costly ones (max_stale > 0), for that many seconds after it changes: a running
    campaign changes its fingerprint every few seconds, and a page need not rescan 100,000
    rows each time."""

    def __init__(self, size: int = 256, clock: Callable[[], float] = time.monotonic):
        self.size, self.items, self.lock, self.clock = size, OrderedDict(), threading.Lock(), clock

    def get(
        self,
        key: Hashable,
        fingerprint: Hashable,
        compute: Callable[[], Any],
        max_stale: float = 0.0,
    ) -> Any:
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


def fingerprint(counts: dict[str, int]) -> tuple:
    """What changes whenever a candidate is added or evaluated: its campaign's status counts."""
    return tuple(sorted(counts.items()))


# -- campaigns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignSummary:
    campaign: Campaign
    counts: dict[str, int]
    best_id: int | None
    best_fitness: float | None
    spent_usd: float
    notes: tuple[str, ...] = ()  # the campaign's columns that could not be read

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def campaign_summaries(session: Session, memo: Memo) -> list[CampaignSummary]:
    """Every campaign, newest first, with its counts, best candidate and dollars."""
    summaries = []
    for found in reversed(readable.campaigns(session)):
        campaign = found.row
        counts = reads.status_counts(session, campaign.id)
        best_id, best_fitness = reads.best_of(island_stats_memo(session, memo, campaign.id, counts))
        summaries.append(
            CampaignSummary(
                campaign,
                counts,
                best_id,
                best_fitness,
                spending(session, memo, campaign.id).dollars,
                found.notes,
            )
        )
    return summaries


def island_stats_memo(
    session: Session, memo: Memo, campaign_id: int, counts: dict[str, int]
) -> list[IslandStats]:
    """archive.reads.island_stats, memoised: memberships change with new candidates (counted)
    and migrations (new members: also counted)."""
    return memo.get(
        ("islands", campaign_id),
        (fingerprint(counts), reads.member_count(session, campaign_id)),
        lambda: reads.island_stats(session, campaign_id),
    )


def migrants(session: Session, memo: Memo, campaign_id: int, limit: int = 30) -> list[Migrant]:
    """archive.reads.recent_migrants, memoised until the memberships change."""
    return memo.get(
        ("migrants", campaign_id),
        reads.member_count(session, campaign_id),
        lambda: reads.recent_migrants(session, campaign_id, limit),
        STALE_SECONDS,
    )


# -- the leaderboard ---------------------------------------------------------------------------


def ranked_ids(
    session: Session,
    campaign_id: int,
    islands: Iterable[int],
    offset: int,
    limit: int,
    descending: bool = True,
) -> list[int]:
    """Scored candidates by fitness (ties by id), positions offset .. offset + limit.

    Each island's members come in fitness order straight from the index; the streams are
    merged and de-duplicated (baselines live on every island, migrants on two). Only the
    merged prefix up to the earliest place where a truncated stream stops is certain, so
    the streams are lengthened until that prefix covers the page."""
    islands, need, fetch = list(islands), offset + limit, offset + limit
    sign = -1.0 if descending else 1.0
    while True:
        streams = [
            reads.ranked_members(session, campaign_id, i, fetch, descending) for i in islands
        ]
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


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    number: int
    total: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def leaderboard(
    session: Session,
    memo: Memo,
    campaign_id: int,
    counts: dict[str, int],
    *,
    status: str = Status.OK,
    sort: str = "fitness",
    descending: bool = True,
    page: int = 1,
    size: int = PAGE_SIZE,
) -> Page:
    """One page of the campaign's candidates of a status: scored ones sortable by fitness,
    meta-test fitness or id; the others by id (newest first)."""
    total = counts.get(status, 0)
    page = max(1, min(page, max(1, -(-total // size))))
    offset = (page - 1) * size
    if status == Status.OK and sort == "fitness" and offset < DEEP:
        islands = [s.island for s in island_stats_memo(session, memo, campaign_id, counts)]
        ids = ranked_ids(session, campaign_id, islands, offset, size, descending)
    elif status == Status.OK and sort in ("fitness", "meta_test"):
        ordered = memo.get(
            (sort, descending, campaign_id),
            fingerprint(counts),
            lambda: readable.full_order(session, campaign_id, sort, descending),
            STALE_SECONDS,
        )
        ids = ordered[offset : offset + size]
    else:
        ids = readable.ids_with_status(session, campaign_id, status, offset, size, descending)
    return Page(readable.rows_by_id(session, ids), page, total, size)


# -- fitness over generations ------------------------------------------------------------------


def progression(
    session: Session, memo: Memo, campaign_id: int, counts: dict[str, int]
) -> Progression:
    """archive.reads.progression (with every scored point while there are few), memoised,
    and the ES checkpoints' best and mean, memoised until a checkpoint is added."""
    result = memo.get(
        ("progression", campaign_id),
        fingerprint(counts),
        lambda: reads.progression(session, campaign_id, SCATTER_POINTS),
        STALE_SECONDS,
    )
    totals = reads.es_totals(session, campaign_id)
    if totals["generations"]:
        es = memo.get(
            ("es_generations", campaign_id),
            tuple(totals.values()),
            lambda: reads.es_generations(session, campaign_id),
        )
        result = dataclasses.replace(result, es=es)
    return result


# -- costs -------------------------------------------------------------------------------------


def spending(session: Session, memo: Memo, campaign_id: int) -> Spending:
    """archive.reads.model_spending, memoised until a model call is added."""
    stamp = reads.call_stamp(session, campaign_id)
    return (
        memo.get(
            ("spending", campaign_id), stamp, lambda: reads.model_spending(session, campaign_id)
        )
        if stamp[0]
        else Spending()
    )


@dataclass(frozen=True)
class Compute:
    sandbox_seconds: float
    es_training_runs: int
    es_env_steps: int
    es_seconds: float


def compute_spent(
    session: Session, memo: Memo, campaign_id: int, counts: dict[str, int]
) -> Compute:
    """Sandbox seconds (memoised: a sum over every candidate) and the ES training totals."""
    es = reads.es_totals(session, campaign_id)
    return memo.get(
        ("compute", campaign_id),
        (fingerprint(counts), es["generations"]),
        lambda: Compute(
            reads.sandbox_seconds(session, campaign_id),
            es["training_runs"],
            es["env_steps"],
            es["wall_seconds"],
        ),
        STALE_SECONDS,
    )


# -- whole rows, read column by column (a malformed stored value is a note, not a 500) --------


# -- one candidate -----------------------------------------------------------------------------


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
        newest = reads.newest_candidate_id(session)
        with self.lock:
            if newest == self.newest:
                return
            for child, parent in reads.parent_links(
                session, after_id=max(0, self.newest - self.OVERLAP)
            ):
                self.children.setdefault(parent, set()).add(child)
            self.newest = max(self.newest, newest)

    def of(self, session: Session, candidate_id: int) -> list[int]:
        self.refresh(session)
        with self.lock:
            return sorted(self.children.get(candidate_id, ()))
