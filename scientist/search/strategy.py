"""The search strategy: a campaign's search policy behind one interface.

The shape is evosax's `ask`/`tell`, with the archive as the state's store. `ask` says what
the proposal for a slot (generation, island) sees: its parents, inspirations and recent
failures; `promotions` which scored candidates the campaign re-evaluates on fresh seeds
next; `tell` takes each scored verdict, inside the transaction that records it, and ranks
the candidate on its islands or holds it for promotion. Island membership, rank scores,
held candidates and migrations are archive rows written with what caused them, so kill -9
loses nothing and a resumed campaign asks the same questions of the same state.

A strategy is one module in `strategies/` defining `STRATEGY`; `make_strategy` builds the
one a campaign names and refuses a name no module defines.
"""

import functools
import importlib
import pkgutil
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from archive import reads, writes
from archive.db import Engine, Session, transaction
from archive.schema import Candidate
from sandbox.vocabulary import Origin, Review
from scientist.search import strategies as strategies_package


@dataclass(frozen=True)
class Slot:
    generation: int
    island: int
    attempt: int  # proposals already tried for this slot


@dataclass(frozen=True)
class Ask:
    """What one proposal is shown, by archive id."""

    parent_ids: list[int]
    inspiration_ids: list[int]
    failure_ids: list[int]


@dataclass(frozen=True)
class SearchSettings:
    islands: int = 2
    parents: int = 2  # sampled per proposal
    inspirations: int = 3  # the island's best, shown beside the parents
    failures: int = 2  # the island's latest failures, shown so they are not repeated
    exploration: float = 0.2  # chance a parent is drawn uniformly instead of by rank
    rank_pressure: float = 2.5  # rank = floor(n * u**pressure): larger favours the top more
    migration_interval: int = 2  # generations between migrations (0: never)
    migrants: int = 1  # best members copied from each island to the next one
    # A proposal whose score would enter its island's top k is held, unranked, for its
    # re-evaluation on fresh seeds (0: never)
    promote_top: int = 0


class SearchStrategy(Protocol):
    def before_generation(self, generation: int) -> None:
        """Once before a generation's first proposal (and again on resume: idempotent)."""

    def can_ask(self, island: int) -> bool:
        """Whether a proposal on `island` has anything to be shown (a scored member)."""

    def ask(self, slot: Slot, rng: random.Random) -> Ask: ...

    def promotions(self) -> list[tuple[int, str]]:
        """The held candidates, (id, code): to be re-evaluated on fresh seeds."""

    def tell(self, session: Session, candidate: Candidate, score: float) -> None:
        """A scored verdict, inside the transaction that records it, with its rank score."""


class ArchivedStrategy:
    """What every strategy here shares: the archive as its state, and elite promotion (a
    proposal entering the top `promote_top` of an island it lives on is held)."""

    def __init__(self, engine: Engine, campaign_id: int, settings: SearchSettings):
        self.engine, self.campaign_id, self.settings = engine, campaign_id, settings

    def before_generation(self, generation: int) -> None:
        pass

    def can_ask(self, island: int) -> bool:
        with transaction(self.engine) as session:
            return reads.scored_member_count(session, self.campaign_id, island) > 0

    def promotions(self) -> list[tuple[int, str]]:
        with transaction(self.engine) as session:
            held = reads.candidates_in_review(session, self.campaign_id, Review.HELD)
        return [(c.id, c.code) for c in held]

    def tell(self, session: Session, candidate: Candidate, score: float) -> None:
        """Promotion: a proposal whose search fitness enters an island's top `promote_top`
        (archive.reads.enters_top) is held for its re-evaluation; otherwise it stays ranked
        at `score`."""
        top = self.settings.promote_top
        if (
            top
            and candidate.origin != Origin.BASELINE
            and reads.enters_top(session, candidate, top)
        ):
            writes.hold(session, candidate.id)

    def _baselines(self, island: int) -> list[int]:
        """The campaign's scored baselines that seed the search (members of every island;
        references only are members of none), in id order."""
        with transaction(self.engine) as session:
            return sorted(
                c.id
                for c in reads.scored_baselines(session, self.campaign_id).values()
                if reads.membership(session, self.campaign_id, island, c.id) is not None
            )


@dataclass(frozen=True)
class StrategyKind:
    name: str  # what `--selection` and the campaign's settings call it
    description: str  # for help texts and reports
    build: Callable[[Engine, int, SearchSettings], SearchStrategy]


@functools.cache
def strategies() -> dict[str, StrategyKind]:
    """Every module of `strategies/` that defines STRATEGY, by the strategy's name."""
    found = {}
    for module in pkgutil.iter_modules(strategies_package.__path__):
        kind = getattr(
            importlib.import_module(f"{strategies_package.__name__}.{module.name}"),
            "STRATEGY",
            None,
        )
        if kind is not None:
            found[kind.name] = kind
    return dict(sorted(found.items()))


def check_strategy(name: str) -> str:
    if name not in strategies():
        raise ValueError(f"unknown search strategy {name!r}; choose {', '.join(strategies())}")
    return name


def make_strategy(
    name: str, engine: Engine, campaign_id: int, settings: SearchSettings
) -> SearchStrategy:
    return strategies()[check_strategy(name)].build(engine, campaign_id, settings)
