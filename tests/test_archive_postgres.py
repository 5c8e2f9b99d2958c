"""The archive on a real PostgreSQL server (tests/postgres_server.py; skipped where no server
binaries are installed): migrations and `alembic check`, round-trips of every column kind,
writers in several processes racing on one campaign's deduplication, two campaigns sharing
one database (down to two campaign loops running side by side), and the browser's engine,
which must not be able to write.

Every test gets a database of its own on the session's server.
"""

import hashlib
import multiprocessing
import threading
import time
import traceback
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from alembic import command
from postgres_server import create_database
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import select

from archive import reads, writes
from archive.db import alembic_config, current_revision, head_revision, open_engine, transaction
from archive.schema import Campaign, Candidate, ESCheckpoint, Event, IslandMember, LLMCall
from sandbox.vocabulary import Status

# The writer processes import this module: nothing here may import jax (harness.cascade
# does), or each process would spend seconds on it.

CODE = (
    "import jax.numpy as jnp\n\n\n"
    "def drift(ratio, advantage):\n    return {c} * jnp.square(ratio - 1.0)\n"
)


@pytest.fixture
def db_url(postgres_url):
    return create_database(postgres_url)


@pytest.fixture
def engine(db_url):
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


def new_campaign(engine, name: str, islands: int = 2) -> Campaign:
    with transaction(engine) as session:
        campaign = Campaign(
            name=name,
            task="mirror_drift",
            budget="smoke",
            proposer="mutation",
            config={"islands": islands},
        )
        session.add(campaign)
    return campaign


def evaluation(status: str = "ok", fitness: float | None = 0.5, **extra):
    """What writes.record_evaluation reads of a cascade Evaluation (without importing jax)."""
    fields = dict(
        status=status,
        fitness=fitness,
        meta_test_fitness=None,
        per_env={},
        stages=[],
        checks=None,
        log_tail="",
        backend="fake",
        seconds=0.1,
        duplicate_of=None,
        fidelity="full",
    )
    return SimpleNamespace(**(fields | extra))


# -- schema ----------------------------------------------------------------------------------------


def test_a_new_database_is_migrated_to_the_head_and_the_models_match_the_migrations(db_url, engine):
    assert engine.dialect.name == "postgresql" and engine.driver == "psycopg"
    assert current_revision(engine) == head_revision()
    command.check(
        alembic_config(engine)
    )  # raises if schema.py and the migrations disagree on PostgreSQL
    # A plain postgresql:// URL means psycopg 3 too; reopening a current archive changes nothing.
    plain = open_engine(db_url.replace("postgresql+psycopg://", "postgresql://"))
    assert plain.driver == "psycopg" and current_revision(plain) == head_revision()
    plain.dispose()


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url):
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        revisions = pool.map(open_and_report_revision, [db_url] * 3)
    assert revisions == [head_revision()] * 3


def open_and_report_revision(url: str) -> str:
    engine = open_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def test_every_column_kind_round_trips(engine):
    berlin = timezone(timedelta(hours=2))
    heartbeat = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=berlin)
    config = {
        "islands": 2,
        "models": ["a/b", "ü-ß ✓"],
        "nested": {"x": [1, 2.5, None, True], "empty": {}},
        "max_cost": None,
        "price": 1e-7,
    }
    blob = bytes(range(256)) * 3 + b"\x00\x00"  # every byte value, NULs included
    big = 5 * 2**32 + 7  # env steps past 2^31
    with transaction(engine) as session:
        campaign = Campaign(
            name="types",
            task="mirror_drift",
            budget="smoke",
            proposer="llm",
            config=config,
            heartbeat_at=heartbeat,
            runner_pid=2**31 - 1,
        )
        session.add(campaign)
        session.flush()
        call = SimpleNamespace(
            model="m",
            messages=[{"role": "user", "content": "π ≈ 3.14159 \\ \" '"}],
            response="```python\nx\n```",
            prompt_tokens=10,
            completion_tokens=5,
            cost_usd=0.0125,
            seconds=1.5,
            attempts=2,
            error=None,
        )
        candidate = writes.add_candidate(
            session,
            campaign,
            code=CODE.format(c=1.0),
            origin="llm",
            operator="rewrite",
            island=1,
            generation=1,
            inspiration_ids=[3, 1],
            calls=[call],
            note="n" * 5000,
        )
        session.add(
            ESCheckpoint(
                campaign_id=campaign.id,
                generation=1,
                state=blob,
                mean=b"",
                member_fitness=[0.5, None],
                per_env={"CartPole-v1": 0.75},
                env_steps=big,
                sigma=0.1,
            )
        )
        writes.log_event(session, campaign.id, "migration", "m", {"moves": [[1, 0, 1]]}, key="once")
    per_env = {
        "meta_train": {
            "CartPole-v1": {
                "returns": [1.0, 2.5],
                "normalised": {"iqm": 0.9},
                "learning_curve": [0.0, None, 3.0],
            }
        }
    }
    with transaction(engine) as session:
        writes.record_evaluation(
            session,
            candidate.id,
            evaluation(
                per_env=per_env,
                stages=[{"name": "full", "status": "ok", "seconds": 1.0}],
                checks={"checks": [{"name": "c", "passed": False, "counterexample": {"r": 1.5}}]},
            ),
        )

    fresh = open_engine(
        engine.url.render_as_string(hide_password=False)
    )  # nothing from the session's cache
    try:
        with transaction(fresh) as session:
            c = session.get(Campaign, campaign.id)
            assert c.config == config
            assert c.heartbeat_at == heartbeat and c.heartbeat_at.utcoffset() == timedelta(
                0
            )  # aware, in UTC
            assert c.created_at.tzinfo is not None and abs(
                datetime.now(timezone.utc) - c.created_at
            ) < timedelta(minutes=5)
            assert c.runner_pid == 2**31 - 1
            k = session.get(Candidate, candidate.id)
            assert (k.per_env, k.stages, k.inspiration_ids) == (
                per_env,
                [{"name": "full", "status": "ok", "seconds": 1.0}],
                [3, 1],
            )
            assert k.checks["checks"][0]["counterexample"] == {"r": 1.5} and k.fitness == 0.5
            assert k.evaluated_at.utcoffset() == timedelta(0) and len(k.proposal_note) == 4000
            assert session.exec(select(LLMCall.messages)).one() == call.messages
            checkpoint = session.exec(select(ESCheckpoint)).one()
            assert (checkpoint.state, checkpoint.mean, checkpoint.env_steps) == (blob, b"", big)
            assert checkpoint.member_fitness == [0.5, None]
            assert session.exec(select(Event.data).where(Event.key == "once")).one() == {
                "moves": [[1, 0, 1]]
            }
            assert [m.fitness for m in session.exec(select(IslandMember)).all()] == [0.5]
        with pytest.raises(
            IntegrityError
        ):  # an event that must happen once, enforced by the database
            with transaction(fresh) as session:
                writes.log_event(session, campaign.id, "migration", "again", key="once")
    finally:
        fresh.dispose()


def test_two_campaigns_in_one_database_keep_their_own_candidates(engine):
    a, b = new_campaign(engine, "a"), new_campaign(engine, "b")
    with transaction(engine) as session:
        first_a = writes.add_candidate(
            session, a, code=CODE.format(c=1.0), origin="llm", operator="r", island=0, generation=1
        )
        first_b = writes.add_candidate(
            session, b, code=CODE.format(c=1.0), origin="llm", operator="r", island=0, generation=1
        )
        again_a = writes.add_candidate(
            session,
            a,
            code=CODE.format(c=1.0) + "# same\n",
            origin="llm",
            operator="r",
            island=1,
            generation=1,
        )
    assert (first_a.status, first_b.status, again_a.status, again_a.duplicate_of) == (
        Status.PENDING,
        Status.PENDING,
        Status.DUPLICATE,
        first_a.id,
    )
    with transaction(engine) as session:
        assert writes.claim_signature(session, a.id, first_a.id, "sig") is None
        assert (
            writes.claim_signature(session, b.id, first_b.id, "sig") is None
        )  # the other campaign's is no duplicate
        writes.record_evaluation(session, first_a.id, evaluation(fitness=0.9))
    with transaction(engine) as session:
        assert reads.slot_counts(session, a.id) == {(1, 0): (1, 1), (1, 1): (0, 1)}
        assert reads.slot_counts(session, b.id) == {(1, 0): (1, 1)}
        assert [c.id for c in reads.leaderboard(session, a.id)] == [
            first_a.id
        ] and reads.leaderboard(session, b.id) == []
        assert reads.status_counts(session, b.id) == {Status.PENDING: 1}


# -- concurrent writers ----------------------------------------------------------------------------

WRITERS = 4
ROUNDS = 24  # proposals per writer and campaign
CODES = 8  # distinct programs; every writer proposes each of them several times
BEHAVIOURS = 12  # signatures, each claimed by every writer at once for a program of its own


def behaviour(k: int) -> str:
    return hashlib.sha256(f"behaviour {k}".encode()).hexdigest()


def racing_writer(url: str, campaign_names: list[str], writer: int, start, results) -> None:
    """One process of the race, in three rounds that all writers begin together: proposing
    overlapping code to every campaign; claiming each behaviour signature for a program of
    its own while every other writer claims it too; recording an evaluation of the one
    candidate the writers share. Reports what it saw, or its traceback."""
    try:
        engine = open_engine(url)
        with transaction(engine) as session:
            campaigns = [reads.get_campaign(session, name) for name in campaign_names]
        added, claims, recorded, refused = [], [], [], 0

        def add(campaign, code):
            with transaction(engine) as session:
                candidate = writes.add_candidate(
                    session,
                    campaign,
                    code=code,
                    origin="llm",
                    operator="rewrite",
                    island=writer % 2,
                    generation=1,
                )
            added.append(
                (
                    campaign.id,
                    candidate.id,
                    candidate.code_hash,
                    candidate.status,
                    candidate.duplicate_of,
                )
            )
            return candidate

        start.wait(timeout=60)
        for round_ in range(ROUNDS):
            code_index = (round_ + writer) % CODES
            for campaign in campaigns:
                add(
                    campaign,
                    CODE.format(c=float(code_index)) + f"# writer {writer}, round {round_}\n",
                )
        own = {
            (campaign.id, k): add(campaign, CODE.format(c=1000.0 + 100 * writer + k))
            for campaign in campaigns
            for k in range(BEHAVIOURS)
        }
        for k in range(BEHAVIOURS):
            start.wait(timeout=60)
            for campaign in campaigns:
                with transaction(engine) as session:
                    earlier = writes.claim_signature(
                        session, campaign.id, own[campaign.id, k].id, behaviour(k)
                    )
                claims.append((campaign.id, own[campaign.id, k].id, behaviour(k), earlier))
        start.wait(timeout=60)
        for campaign in campaigns:
            with transaction(engine) as session:
                shared = session.exec(
                    select(Candidate.id).where(
                        Candidate.campaign_id == campaign.id, Candidate.operator == "shared"
                    )
                ).one()
            try:
                with transaction(engine) as session:
                    writes.record_evaluation(session, shared, evaluation(fitness=float(writer)))
                recorded.append(shared)
            except ValueError as error:
                assert "already evaluated" in str(error)
                refused += 1
        engine.dispose()
        results.put((writer, added, claims, recorded, refused, None))
    except BaseException:
        start.abort()
        results.put((writer, [], [], [], 0, traceback.format_exc()))


@pytest.mark.timeout(120)
def test_writers_in_several_processes_store_each_program_and_behaviour_once(engine, db_url):
    names = ["left", "right"]
    shared = {}
    for name in names:
        campaign = new_campaign(engine, name)
        with transaction(engine) as session:
            shared[campaign.id] = writes.add_candidate(
                session,
                campaign,
                code=CODE.format(c=-1.0),
                origin="llm",
                operator="shared",
                island=0,
                generation=0,
            ).id
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(WRITERS), context.Queue()
    writers = [
        context.Process(target=racing_writer, args=(db_url, names, w, start, results))
        for w in range(WRITERS)
    ]
    try:
        for process in writers:
            process.start()
        reports = [results.get(timeout=100) for _ in writers]
        for process in writers:
            process.join(timeout=30)
    finally:
        for process in writers:
            if process.is_alive():
                process.kill()
    errors = [error for *_, error in reports if error]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in writers] == [0] * WRITERS

    added = [row for report in reports for row in report[1]]
    claims = [row for report in reports for row in report[2]]
    with transaction(engine) as session:
        rows = {c.id: c for c in session.exec(select(Candidate)).all()}
        members = session.exec(select(IslandMember)).all()
    # No lost rows: every proposal stored, each with the status its writer was told.
    assert len(added) == WRITERS * (ROUNDS + BEHAVIOURS) * len(names)
    assert len(rows) == len(added) + len(names)
    assert all(
        rows[cid].status in (status, "ok") and rows[cid].duplicate_of == dup
        for _, cid, _, status, dup in added
    )
    for campaign_id in shared:
        # Each program is stored once as new per campaign; every other copy is its duplicate.
        new = defaultdict(list)
        for c in rows.values():
            if c.campaign_id == campaign_id and c.status != Status.DUPLICATE:
                new[c.code_hash].append(c.id)
        assert len(new) == CODES + WRITERS * BEHAVIOURS + 1 and all(
            len(ids) == 1 for ids in new.values()
        ), new
        for c in rows.values():
            if c.campaign_id == campaign_id and c.status == Status.DUPLICATE:
                assert [c.duplicate_of] == new[c.code_hash]
        # Each behaviour is held by exactly one candidate; every other claim of it was told that
        # one.
        holders = Counter(
            c.signature for c in rows.values() if c.campaign_id == campaign_id and c.signature
        )
        assert holders == Counter({behaviour(k): 1 for k in range(BEHAVIOURS)})
        owner = {
            c.signature: c.id for c in rows.values() if c.campaign_id == campaign_id and c.signature
        }
        mine = [
            (cid, sig, earlier)
            for claim_campaign, cid, sig, earlier in claims
            if claim_campaign == campaign_id
        ]
        assert len(mine) == WRITERS * BEHAVIOURS
        assert all(
            earlier == (None if owner[sig] == cid else owner[sig]) for cid, sig, earlier in mine
        )
        # Island membership: exactly the new candidates.
        assert sorted(m.candidate_id for m in members if m.campaign_id == campaign_id) == sorted(
            ids[0] for ids in new.values()
        )
    # The shared candidates were evaluated once each, by one writer; the others were refused.
    recorded = [cid for report in reports for cid in report[3]]
    assert sorted(recorded) == sorted(shared.values())
    assert sum(report[4] for report in reports) == (WRITERS - 1) * len(names)


# -- two campaign loops side by side ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_two_campaigns_run_side_by_side_on_one_database(engine, db_url):
    """The real loop (proposals, selection, migration, lease, evaluator threads claiming
    signatures) for two campaigns at once, with a stand-in for the sandbox: no training."""
    from harness.cascade import Evaluation
    from sandbox.tasks import load_task
    from scientist.campaign.config import CampaignConfig
    from scientist.campaign.loop import CampaignLoop
    from scientist.proposers.mutation import MutationProposer
    from tests.stand_ins import blockwise

    def evaluate_one(code, claim_signature):
        digest = hashlib.sha256(code.encode()).digest()
        time.sleep(0.01)
        # few behaviours: many duplicates (a re-evaluation round claims nothing)
        earlier = claim_signature and claim_signature(f"behaviour {digest[0] % 8}")
        if earlier is not None:
            return Evaluation(Status.DUPLICATE, None, duplicate_of=earlier, backend="fake")
        return Evaluation("ok", digest[1] / 255, meta_test_fitness=0.5, backend="fake")

    def evaluate(task, sources, budget, *, claims, **kwargs):
        return [evaluate_one(code, claim) for code, claim in zip(sources, claims, strict=True)]

    configs = [
        CampaignConfig(
            name=name,
            task="mirror_drift",
            generations=3,
            population=2,
            islands=2,
            workers=3,
            migration_interval=1,
            seed=seed,
        )
        for seed, name in enumerate(["north", "south"])
    ]
    runners = [
        CampaignLoop(
            engine, c, MutationProposer(load_task("mirror_drift")), executor=blockwise(evaluate)
        )
        for c in configs
    ]
    outcomes = {}

    def run(runner):
        try:
            outcomes[runner.config.name] = runner.run().status
        except BaseException as error:  # noqa: BLE001 (reported below)
            outcomes[runner.config.name] = repr(error)

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert outcomes == {"north": "finished", "south": "finished"}
    with transaction(engine) as session:
        for runner in runners:
            campaign_id = runner.campaign.id
            counts = reads.status_counts(session, campaign_id)
            assert (
                Status.PENDING not in counts and counts.get("ok", 0) >= 3
            )  # the baselines at least
            rows = reads.candidates(session, campaign_id)
            slots = reads.slot_counts(session, campaign_id)  # every slot was proposed for
            assert all(slots.get((g, i), (0, 0))[1] >= 2 for g in (1, 2, 3) for i in (0, 1)), slots
            signatures = Counter(c.signature for c in rows if c.signature)
            assert all(n == 1 for n in signatures.values())
            assert all(
                c.duplicate_of is None
                or session.get(Candidate, c.duplicate_of).campaign_id == campaign_id
                for c in rows
            )
            assert all(
                c.parent_id is None
                or session.get(Candidate, c.parent_id).campaign_id == campaign_id
                for c in rows
            )
            assert reads.has_event(session, campaign_id, "migration:2")
            campaign = session.get(Campaign, campaign_id)
            assert campaign.status == "finished" and campaign.runner_pid is None


# -- the browser's engine --------------------------------------------------------------------------


def test_the_web_engine_reads_but_cannot_write(engine, db_url, postgres_url, tmp_path):
    from fastapi.testclient import TestClient

    from scientist.web.app import create_app
    from scientist.web.engine import ArchiveUnreadable, reader_engine

    campaign = new_campaign(engine, "browsed")
    with transaction(engine) as session:
        parent = writes.add_candidate(
            session,
            campaign,
            code=CODE.format(c=1.0),
            origin="baseline",
            operator="seed",
            island=0,
            generation=0,
            member_of=(0, 1),
        )
        child = writes.add_candidate(
            session,
            campaign,
            code=CODE.format(c=2.0),
            origin="llm",
            operator="rewrite",
            island=1,
            generation=1,
            parent_id=parent.id,
        )
    with transaction(engine) as session:
        writes.record_evaluation(session, parent.id, evaluation(fitness=1.0))
        writes.record_evaluation(session, child.id, evaluation(fitness=1.2))

    reader = reader_engine(db_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        with transaction(reader) as session:
            assert [c.id for c in reads.leaderboard(session, campaign.id)] == [child.id, parent.id]
        forbidden = [
            lambda s: s.add(
                Campaign(name="sneaky", task="t", budget="smoke", proposer="p", config={})
            ),
            lambda s: s.execute(text("UPDATE candidate SET fitness = 0")),
            lambda s: s.execute(text("DELETE FROM island_member")),
            lambda s: s.execute(text("CREATE TABLE sneaky (x int)")),
        ]
        for write in forbidden:
            with pytest.raises(DBAPIError, match="read-only transaction"):
                with transaction(reader) as session:
                    write(session)
        with reader.connect() as connection:  # outside any explicit transaction too
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            with pytest.raises(DBAPIError, match="read-only transaction"):
                autocommit.execute(text("DELETE FROM event"))
        client = TestClient(create_app(reader, tmp_path / "cache"), base_url="http://127.0.0.1")
        for page in (
            "/",
            f"/campaigns/{campaign.id}",
            f"/candidates/{child.id}",
            f"/candidates/{child.id}/code.py",
        ):
            assert client.get(page).status_code == 200, page
    finally:
        reader.dispose()
    with transaction(engine) as session:  # all still there, unchanged
        assert reads.find_campaign(session, "sneaky") is None
        assert (
            session.get(Candidate, child.id).fitness == 1.2
            and len(session.exec(select(IslandMember)).all()) == 3
        )
    with pytest.raises(ArchiveUnreadable, match="not an rl-scientist archive"):
        reader_engine(create_database(postgres_url)).dispose()
