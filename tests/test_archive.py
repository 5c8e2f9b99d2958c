"""The SQL archive on a real SQLite file: migrations, transactions, deduplication, island
membership bookkeeping."""

import pytest
from alembic import command
from sqlalchemy import text
from sqlmodel import select

from archive import reads, writes
from archive.db import (
    ArchiveError,
    alembic_config,
    current_revision,
    head_revision,
    open_engine,
    transaction,
)
from archive.fingerprint import code_hash
from archive.schema import Campaign, Candidate, EvaluationRound, IslandMember, LLMCall
from harness.cascade import Evaluation, StageRecord
from scientist.proposers.base import CallRecord
from scientist.search.strategy import ArchivedStrategy, SearchSettings

CODE = (
    "import jax.numpy as jnp\n\n\n"
    "def drift(ratio, advantage):\n    return jnp.square(ratio - 1.0)\n"
)


@pytest.fixture
def engine(tmp_path):
    return open_engine(f"sqlite:///{tmp_path}/archive.db")


@pytest.fixture
def campaign(engine):
    with transaction(engine) as session:
        c = Campaign(
            name="c",
            task="mirror_drift",
            budget="smoke",
            proposer="mutation",
            config={"islands": 2},
        )
        session.add(c)
    return c


def ok(fitness):
    return Evaluation(
        "ok", fitness, 0.5, per_env={"meta_train": {}}, stages=[StageRecord("full", "ok", 1.0)]
    )


def test_a_new_archive_is_at_the_head_revision_and_the_models_match_the_migrations(engine):
    assert current_revision(engine) == head_revision()
    command.check(alembic_config(engine))  # raises if schema.py has changes without a migration
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_reopening_is_a_no_op_and_an_archive_from_a_newer_version_is_refused(tmp_path, engine):
    url = f"sqlite:///{tmp_path}/archive.db"
    assert current_revision(open_engine(url)) == head_revision()
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(ArchiveError, match="newer"):
        open_engine(url)


def test_code_identity_ignores_comments_docstrings_and_layout():
    variant = (
        'import jax.numpy as jnp\ndef drift(ratio, advantage):\n    """Doc."""\n'
        "    # a comment\n    return jnp.square(ratio-1.0)\n"
    )
    assert code_hash(CODE) == code_hash(variant)
    assert code_hash(CODE) != code_hash(CODE.replace("1.0", "1.5"))


def test_a_duplicate_and_a_proposal_without_code_are_recorded_but_never_pending(engine, campaign):
    call = CallRecord("m", [{"role": "user", "content": "p"}], "no code here", 10, 5, 0.25)
    with transaction(engine) as session:
        first = writes.add_candidate(
            session,
            campaign,
            code=CODE,
            origin="llm",
            operator="rewrite",
            island=1,
            generation=1,
            calls=[call],
        )
        again = writes.add_candidate(
            session,
            campaign,
            code=CODE + "# same\n",
            origin="llm",
            operator="diff",
            island=0,
            generation=1,
        )
        empty = writes.add_candidate(
            session,
            campaign,
            code=None,
            origin="llm",
            operator="rewrite",
            island=0,
            generation=1,
            calls=[call],
            note="no code block",
        )
    assert (first.status, again.status, again.duplicate_of, empty.status) == (
        "pending",
        "duplicate",
        first.id,
        "no_code",
    )
    with transaction(engine) as session:
        assert [c.id for c in reads.pending_candidates(session, campaign.id)] == [first.id]
        assert reads.spent_usd(session, campaign.id) == pytest.approx(0.5)
        assert session.get(Candidate, first.id).prompt_tokens == 10
        assert len(session.exec(select(LLMCall)).all()) == 2
        assert reads.slot_counts(session, campaign.id) == {(1, 1): (1, 1), (1, 0): (0, 2)}
        members = session.exec(select(IslandMember)).all()
    assert [(m.island, m.candidate_id) for m in members] == [(1, first.id)]


def test_an_evaluation_sets_fitness_on_every_island_and_a_failure_leaves_them(engine, campaign):
    with transaction(engine) as session:
        good = writes.add_candidate(
            session,
            campaign,
            code=CODE,
            origin="baseline",
            operator="seed",
            island=0,
            generation=0,
            member_of=(0, 1),
        )
        bad = writes.add_candidate(
            session,
            campaign,
            code=CODE.replace("1.0", "2.0"),
            origin="mutation",
            operator="mutate",
            island=1,
            generation=1,
        )
    with transaction(engine) as session:
        writes.record_evaluation(session, good.id, ok(0.9))
        writes.record_evaluation(
            session,
            bad.id,
            Evaluation("invalid", None, stages=[StageRecord("validity", "invalid", 1.0, "x")]),
        )
    with transaction(engine) as session:
        members = session.exec(select(IslandMember)).all()
        assert sorted((m.island, m.candidate_id, m.fitness) for m in members) == [
            (0, good.id, 0.9),
            (1, good.id, 0.9),
        ]
        with pytest.raises(ValueError, match="already evaluated"):
            writes.record_evaluation(session, good.id, ok(0.1))


def test_a_failing_transaction_writes_nothing(engine, campaign):
    with pytest.raises(RuntimeError):
        with transaction(engine) as session:
            writes.add_candidate(
                session,
                campaign,
                code=CODE,
                origin="llm",
                operator="rewrite",
                island=0,
                generation=1,
            )
            raise RuntimeError("crash between two writes")
    with transaction(engine) as session:
        assert reads.candidates(session, campaign.id) == []
        assert session.exec(select(IslandMember)).all() == []


def test_a_behaviour_signature_is_claimed_once(engine, campaign):
    with transaction(engine) as session:
        a = writes.add_candidate(
            session, campaign, code=CODE, origin="llm", operator="rewrite", island=0, generation=1
        )
        b = writes.add_candidate(
            session,
            campaign,
            code=CODE.replace("square(ratio - 1.0)", "square(1.0 - ratio)"),
            origin="llm",
            operator="rewrite",
            island=0,
            generation=1,
        )
    with transaction(engine) as session:
        assert writes.claim_signature(session, campaign.id, a.id, "abc") is None
        assert (
            writes.claim_signature(session, campaign.id, a.id, "abc") is None
        )  # its own signature again
        assert writes.claim_signature(session, campaign.id, b.id, "abc") == a.id
        assert session.get(Candidate, b.id).signature is None


@pytest.mark.parametrize(
    ("fitnesses", "held"),
    [
        ([0.9, 0.8, 0.7, 0.6, 0.5], [True, True, False, False, False]),  # one batch, best first
        ([0.5, 0.6, 0.7], [True, True, True]),  # each enters the top 2 when it arrives
    ],
)
def test_promotion_counts_the_candidates_already_held(engine, campaign, fitnesses, held):
    """Elite re-evaluation promotes a candidate entering its island's top k; those already
    held (unranked until re-evaluated) count above it by their search fitness, so a batch
    scored at once promotes its best k, not all of its members."""
    with transaction(engine) as session:
        baseline = writes.add_candidate(
            session,
            campaign,
            code=CODE,
            origin="baseline",
            operator="seed",
            island=0,
            generation=0,
            member_of=(0,),
        )
        writes.record_evaluation(session, baseline.id, ok(0.1))
        ids = [
            writes.add_candidate(
                session,
                campaign,
                code=CODE.replace("1.0", f"{2 + i}.0"),
                origin="mutation",
                operator="mutate",
                island=0,
                generation=1,
            ).id
            for i in range(len(fitnesses))
        ]
    promotion = ArchivedStrategy(engine, campaign.id, SearchSettings(promote_top=2))
    for candidate_id, fitness in zip(ids, fitnesses, strict=True):
        with transaction(engine) as session:
            candidate = writes.record_evaluation(session, candidate_id, ok(fitness))
            promotion.tell(session, candidate, candidate.fitness)
    with transaction(engine) as session:
        rows = reads.candidates_by_id(session, ids)
    assert [rows[i].review == "held" for i in ids] == held


def test_promotion_compares_search_fitness_not_rank_scores(engine, campaign):
    """Baselines measured on many seeds rank by a pooled lower bound a newcomer's first block
    cannot reach; promotion compares every member's search block (the same seeds), so a
    newcomer that beats them there is promoted all the same (a discovery run from the
    baselines promoted nothing for 55 minutes before)."""

    def scored(session, fitness: float, rank: float, **where):
        code = CODE.replace("jnp.square", f"{fitness} * jnp.square")
        row = writes.add_candidate(session, campaign, code=code, **where)
        block = EvaluationRound(block=0, training_seed=1, runs=2, status="ok", fitness=fitness)
        return writes.record_evaluation(
            session, row.id, ok(fitness), round=block, rank=lambda c: rank
        )

    with transaction(engine) as session:
        for name, fitness in (("ppo", 1.0), ("dpo", 1.02)):  # rank: a 10-seed lower bound
            scored(
                session,
                fitness,
                fitness - 0.03,
                origin="baseline",
                operator="seed",
                island=0,
                generation=0,
                member_of=(0,),
                baseline_name=name,
            )
        newcomer = scored(
            session, 1.05, 0.7, origin="mutation", operator="mutate", island=0, generation=1
        )
        ArchivedStrategy(engine, campaign.id, SearchSettings(promote_top=2)).tell(
            session, newcomer, 0.7
        )
    with transaction(engine) as session:
        assert reads.candidate(session, newcomer.id).review == "held"
