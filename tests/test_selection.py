"""Search strategies on a real SQLite archive: island evolution's rank pressure,
exploration, island isolation and ring migration; the strategy registry; and a strategy
added as one module file, run through a campaign."""

import random
from collections import Counter

import pytest
from sqlmodel import select

from archive import reads, writes
from archive.db import open_engine, transaction
from archive.schema import Campaign, IslandMember
from harness.cascade import Evaluation
from scientist.search.strategies.islands import IslandEvolution
from scientist.search.strategy import SearchSettings


def populate(
    engine, islands: int, per_island: int, baseline_fitness: float = -1.0
) -> tuple[Campaign, dict[int, list[int]]]:
    """Candidates with fitness = their index within the island; one baseline on every island."""
    with transaction(engine) as session:
        campaign = Campaign(
            name="s", task="mirror_drift", budget="smoke", proposer="mutation", config={}
        )
        session.add(campaign)
        session.flush()
        ids = {i: [] for i in range(islands)}
        base = writes.add_candidate(
            session,
            campaign,
            code="baseline",
            origin="baseline",
            operator="seed",
            island=0,
            generation=0,
            member_of=tuple(range(islands)),
        )
        writes.record_evaluation(session, base.id, Evaluation("ok", baseline_fitness))
        for island in range(islands):
            for k in range(per_island):
                c = writes.add_candidate(
                    session,
                    campaign,
                    code=f"island {island} candidate {k}",
                    origin="mutation",
                    operator="mutate",
                    island=island,
                    generation=1,
                )
                writes.record_evaluation(session, c.id, Evaluation("ok", float(k)))
                ids[island].append(c.id)
    return campaign, ids | {"baseline": base.id}


@pytest.fixture
def engine(tmp_path):
    return open_engine(f"sqlite:///{tmp_path}/archive.db")


def test_parents_come_only_from_their_island_and_favour_the_top(engine):
    campaign, ids = populate(engine, islands=3, per_island=40)
    selector = IslandEvolution(engine, campaign.id, SearchSettings(islands=3, exploration=0.1))
    rng = random.Random(0)
    for island in range(3):
        allowed = set(ids[island]) | {ids["baseline"]}
        drawn = [p for _ in range(300) for p in selector.sample_parent_ids(island, 2, rng)]
        assert set(drawn) <= allowed
        rank_of = {cid: k for k, cid in enumerate(reversed(ids[island]))}  # 0 = best
        ranks = Counter(min(rank_of.get(p, 40) // 10, 3) for p in drawn)
        assert ranks[0] > 2 * ranks[3], (
            ranks
        )  # the top quarter is drawn far more than the bottom one
        assert ranks[3] > 0  # exploration still reaches the bottom
        with transaction(engine) as session:
            assert reads.best_member_ids(session, campaign.id, island, 1) == [ids[island][-1]]


def test_full_exploration_is_uniform(engine):
    campaign, ids = populate(engine, islands=1, per_island=10)
    selector = IslandEvolution(engine, campaign.id, SearchSettings(islands=1, exploration=1.0))
    rng = random.Random(1)
    counts = Counter(selector.sample_parent_ids(0, 1, rng)[0] for _ in range(2200))
    assert len(counts) == 11 and min(counts.values()) > 120


def test_migration_moves_the_best_around_the_ring_once_per_generation(engine):
    campaign, ids = populate(engine, islands=3, per_island=5)
    selector = IslandEvolution(
        engine, campaign.id, SearchSettings(islands=3, migration_interval=2, migrants=1)
    )
    assert selector.migrate(2) == []  # not a migration generation
    moves = selector.migrate(3)
    assert sorted(moves) == sorted((ids[i][-1], i, (i + 1) % 3) for i in range(3))
    assert selector.migrate(3) == []  # a resumed campaign does not migrate twice
    with transaction(engine) as session:
        migrants = session.exec(
            select(IslandMember).where(IslandMember.migrated_from.is_not(None))
        ).all()
    assert {(m.candidate_id, m.island, m.since_generation) for m in migrants} == {
        (ids[i][-1], (i + 1) % 3, 3) for i in range(3)
    }
    # After migration island 1's best is island 0's best (fitness 4 ties; lower id first).
    rng = random.Random(2)
    drawn = {p for _ in range(300) for p in selector.sample_parent_ids(1, 2, rng)}
    assert drawn <= set(ids[1]) | {ids["baseline"], ids[0][-1]}
    assert ids[0][-1] in drawn and not drawn & (set(ids[0][:-1]) | set(ids[2]))


def test_migration_skips_the_best_that_the_next_island_already_holds(engine):
    """Baselines seed every island; when one is an island's best, the migrant is the best
    member the next island lacks, not nothing."""
    campaign, ids = populate(engine, islands=2, per_island=3, baseline_fitness=10.0)
    selector = IslandEvolution(
        engine, campaign.id, SearchSettings(islands=2, migration_interval=1, migrants=1)
    )
    assert sorted(selector.migrate(2)) == [(ids[0][-1], 0, 1), (ids[1][-1], 1, 0)]


# -- the registry, and a strategy added as one file --------------------------------------------
NEWEST_FIRST = '''
"""Newest first: the parents are the island's latest scored members."""

import random

from archive import reads
from archive.db import transaction
from scientist.search.strategy import ArchivedStrategy, Ask, Slot, StrategyKind


class NewestFirst(ArchivedStrategy):
    def ask(self, slot: Slot, rng: random.Random) -> Ask:
        with transaction(self.engine) as session:
            ranked = reads.ranked_members(session, self.campaign_id, slot.island, 10_000, True)
        newest = sorted((i for i, _ in ranked), reverse=True)
        return Ask(newest[: self.settings.parents], [], [])


STRATEGY = StrategyKind("newest", "the latest scored members as parents", NewestFirst)
'''


def test_an_unknown_strategy_is_refused_with_the_known_ones():
    from scientist.campaign.config import CampaignConfig

    with pytest.raises(ValueError, match="unknown search strategy 'annealing'.*evolution, none"):
        CampaignConfig(name="x", task="mirror_drift", selection="annealing")


def test_a_strategy_is_one_module(tmp_path, monkeypatch):
    """A module defining STRATEGY, placed in the strategies package (here through its search
    path, so the working tree is untouched), is a campaign's `selection` with no other edit;
    its choices are what the proposer is shown."""
    from test_reevaluation import Watching, stand_in_evaluate

    from scientist.campaign.config import CampaignConfig
    from scientist.campaign.loop import CampaignLoop
    from scientist.search import strategies as package
    from scientist.search import strategy
    from tests.stand_ins import blockwise

    folder = tmp_path / "more_strategies"
    folder.mkdir()
    (folder / "newest.py").write_text(NEWEST_FIRST)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    strategy.strategies.cache_clear()
    try:
        assert set(strategy.strategies()) == {"evolution", "none", "newest"}
        engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
        config = CampaignConfig(
            name="newest", task="mirror_drift", generations=2, population=3, selection="newest"
        )
        proposer = Watching(engine)
        campaign = CampaignLoop(
            engine, config, proposer, executor=blockwise(stand_in_evaluate)
        ).run()
        assert campaign.status == "finished", campaign.message
        with transaction(engine) as session:
            rows = {c.id: c for c in reads.candidates(session, campaign.id)}
        offered = [parents for parents, _ in proposer.offered]
        assert len(offered) >= 2 * 2 * 3  # generations x islands x population, and retries
        later = [ids for ids in offered if any(rows[i].generation > 0 for i in ids)]
        assert later  # parents beyond the baselines: the newest ones, as the module says
        for ids in offered:
            assert ids == sorted(ids, reverse=True)
    finally:
        strategy.strategies.cache_clear()
