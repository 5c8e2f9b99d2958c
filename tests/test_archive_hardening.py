"""Issue 17, findings 3, 6, 7 and 8, through the real command line: an unusable archive
(damaged, foreign, at another schema) ends any command in one line; commands that only read
never create or migrate an archive; a candidate file is read only up to the size limit; a
task is a folder's name, never a path, and its templates render sandboxed. Then properties
(Hypothesis) of the archive's JSON columns: any JSON value round-trips through the writers
and readers, and any string stored in one never crashes `status` or `archive show`."""

import hashlib
import itertools
import json
import shutil
import sqlite3
from pathlib import Path

import jinja2
import pytest
from alembic import command as alembic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from archive import reads, writes
from archive.db import (
    ArchiveError,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    open_engine,
    open_reader,
    transaction,
)
from archive.schema import Campaign, Candidate, Event
from harness.cascade import Evaluation, StageRecord
from sandbox import tasks
from sandbox.checks.static import MAX_SOURCE_BYTES
from sandbox.tasks import TaskError, load_task
from sandbox.vocabulary import Status
from scientist.campaign.config import CampaignConfig
from scientist.cli import app

CODE = (
    "import jax.numpy as jnp\n\n\n"
    "def drift(ratio, advantage):\n    return jnp.square(ratio - {c})\n"
)
CANDIDATES = 40  # enough rows that the candidate table spans many pages
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def build_archive(path: Path) -> dict:
    """Campaign `c` (settings as `scientist run` stores them) with scored and failed
    candidates, a model call and an event; the ids of a scored and a failed candidate."""
    engine = open_engine(url(path))
    config = CampaignConfig(name="c", task="mirror_drift").model_dump(mode="json")
    with transaction(engine) as s:
        campaign = Campaign(
            name="c", task="mirror_drift", budget="smoke", proposer="mutation", config=config
        )
        s.add(campaign)
        s.flush()
        ids = [
            writes.add_candidate(
                s,
                campaign,
                code=CODE.format(c=k),
                origin="mutation",
                operator="mutate",
                island=0,
                generation=1,
                member_of=(0,),
            ).id
            for k in range(CANDIDATES)
        ]
        writes.log_event(s, campaign.id, "start", "started", data={"pid": 1})
    with transaction(engine) as s:
        writes.record_evaluation(s, ids[0], evaluation(Status.INVALID))
        writes.record_evaluation(
            s,
            ids[1],
            Evaluation(
                Status.OK,
                0.5,
                0.4,
                per_env={"meta_train": {"CartPole-v1": {"normalised": {"iqm": 0.5}}}},
                stages=[StageRecord("full", Status.OK, 2.0)],
            ),
        )
    engine.dispose()
    return {"failed": ids[0], "scored": ids[1]}


def evaluation(status: str, **values) -> Evaluation:
    return Evaluation(
        status,
        None,
        stages=[StageRecord("validity", status, 1.0, "slope at r=1 is 0.3")],
        **values,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("template") / "archive.db"
    return path, build_archive(path)


@pytest.fixture
def archive(template, tmp_path) -> Path:
    path = tmp_path / "archive.db"
    shutil.copy(template[0], path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(result, *phrases: str) -> None:
    """Exit status 2 and a single line naming the archive's problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(p in lines[0] for p in phrases), lines[0]


# -- finding 3: a damaged or foreign archive ---------------------------------------------------


def sql(path: Path, statement: str, *parameters) -> None:
    """One statement by another program, committed and closed (nothing left in the WAL)."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(statement, parameters)
    finally:
        db.close()


def truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def scramble_the_candidates(path: Path) -> None:
    """Garbage over the candidate table's first page: the archive opens, its revision reads,
    and the damage shows only when candidates are read."""
    db = sqlite3.connect(path)
    try:
        query = "SELECT rootpage FROM sqlite_master WHERE name = 'candidate'"
        (page,) = db.execute(query).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    finally:
        db.close()
    with path.open("r+b") as f:
        f.seek((page - 1) * size)
        f.write(bytes((i * 37 + 11) % 256 for i in range(size)))


def not_sqlite(path: Path) -> None:
    path.write_text("campaign,fitness\nc,0.5\n")


def random_bytes(path: Path) -> None:
    path.write_bytes(bytes((i * 7919) % 251 for i in range(100_000)))


def unstamped(path: Path) -> None:
    sql(path, "DROP TABLE alembic_version")


def stamped_older_than_its_tables(path: Path) -> None:
    sql(path, "UPDATE alembic_version SET version_num = '0001'")


# damage found on opening -> what the line says
AT_OPEN = {
    not_sqlite: "damaged",
    random_bytes: "damaged",
    unstamped: "not an rl-scientist archive",
    stamped_older_than_its_tables: "older",
}
# damage that may be found only when the damaged rows are read
DAMAGE = {**AT_OPEN, truncate: "damaged", scramble_the_candidates: "damaged"}


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", [["status", "c"], ["archive", "list", "c"]])
def test_an_unusable_archive_is_one_line_not_a_traceback(archive, damage, command):
    damage(archive)
    one_line(cli(*command, "--db", url(archive)), f"archive {archive}", DAMAGE[damage])


@pytest.mark.parametrize("damage", AT_OPEN, ids=lambda f: f.__name__)
def test_the_web_browser_refuses_an_unusable_archive_in_one_line(archive, damage):
    damage(archive)  # (damage found later is a page's error, not the server's)
    one_line(cli("web", "--db", url(archive)), f"archive {archive}", AT_OPEN[damage])


@pytest.mark.parametrize("damage", [stamped_older_than_its_tables, unstamped, truncate])
def test_a_writer_refuses_what_it_cannot_migrate_and_writes_nothing(archive, damage):
    damage(archive)
    before = digest(archive)
    result = cli("archive", "upgrade", "--db", url(archive))
    one_line(result, f"archive {archive}")
    assert digest(archive) == before
    with pytest.raises(ArchiveError, match="not an rl-scientist archive|match its schema|damaged"):
        open_engine(url(archive))  # `scientist run` would create its tables in it


def test_a_database_of_another_program_is_never_written_to(tmp_path):
    path = tmp_path / "theirs.db"
    sql(path, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    before = digest(path)
    with pytest.raises(ArchiveError, match="tables but no schema revision"):
        open_engine(url(path))
    assert digest(path) == before


# -- finding 6: commands that only read never create or migrate ----------------------------------


def test_reading_a_missing_or_empty_archive_creates_nothing(tmp_path):
    missing = tmp_path / "missing" / "path.db"
    one_line(cli("status", "c", "--db", url(missing)), str(missing), "no archive")
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in (["status", "c"], ["archive", "list", "c"], ["web"], ["resume", "c"]):
        one_line(cli(*command, "--db", url(empty)), str(empty), "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert empty.stat().st_size == 0


def test_reading_an_older_archive_leaves_it_at_its_revision(tmp_path):
    path = tmp_path / "old.db"
    engine = make_engine(url(path))
    alembic.upgrade(alembic_config(engine), "0001")
    one_line(cli("status", "c", "--db", url(path)), "older", "scientist archive upgrade")
    assert current_revision(engine) == "0001"
    assert cli("archive", "upgrade", "--db", url(path)).exit_code == 0
    assert current_revision(open_reader(url(path))) == head_revision()


def test_reading_commands_show_everything_and_leave_the_archive_unchanged(archive, template):
    before = digest(archive)
    ids = template[1]
    shown = {
        "status": cli("status", "c", "--db", url(archive)),
        "list": cli("archive", "list", "c", "--db", url(archive)),
        "scored": cli("archive", "show", ids["scored"], "--db", url(archive)),
        "failed": cli("archive", "show", ids["failed"], "--db", url(archive)),
    }
    assert all(r.exit_code == 0 and "could not be read" not in r.output for r in shown.values())
    assert "proposals" in shown["status"].output  # the settings' summary
    assert "CartPole-v1" in shown["scored"].output  # its scores
    assert "slope at r=1 is 0.3" in shown["failed"].output  # its failing stage
    assert digest(archive) == before


# -- finding 7: a candidate file is read up to the limit, no further ------------------------------


def test_check_refuses_a_huge_file_without_reading_it(tmp_path):
    huge = tmp_path / "huge.py"
    with huge.open("wb") as f:
        f.truncate(64 * 2**20)  # sparse: 64 MiB that reading whole would allocate
    result = cli("check", huge)
    assert result.exit_code == 2, result.output
    assert f"over {MAX_SOURCE_BYTES} bytes" in result.output
    exactly = tmp_path / "exactly.py"
    exactly.write_text("x = 1\n" + "#" * (MAX_SOURCE_BYTES - 7) + "\n")
    assert cli("check", exactly).exit_code == 1  # read whole, then judged (no drift)


# -- finding 8: a task is a folder's name, never a path --------------------------------------


@pytest.fixture
def outside_task(tmp_path):
    """A copy of mirror_drift outside task_templates/, whose template reaches for the OS."""
    folder = tmp_path / "mirror_drift"
    shutil.copytree(tasks.TASKS_DIR / "mirror_drift", folder)
    marker = tmp_path / "EXECUTED"
    (folder / "candidate.py.j2").write_text(
        "{{ cycler.__init__.__globals__.os.system('touch %s') }}{{ source }}" % marker
    )
    return folder, marker


def test_a_task_given_as_a_path_is_refused(outside_task):
    folder, marker = outside_task
    baseline = tasks.TASKS_DIR / "mirror_drift" / "baselines" / "ppo.py"
    for name in ("mirror_drift/../optimizer", str(folder), "../task_templates/mirror_drift"):
        result = cli("check", "--task", name, baseline)
        assert result.exit_code == 2 and "invalid task name" in result.output, result.output
        with pytest.raises(TaskError, match="invalid task name"):
            load_task(name)
    assert not marker.exists()


@pytest.mark.parametrize("stored", ["mirror_drift/../no_such_task", "outside"])
def test_resume_refuses_a_stored_task_that_is_a_path(archive, tmp_path, stored):
    outside = tmp_path / "outside"  # what a shared archive could point at
    outside.mkdir()
    (outside / "task.toml").write_text("not = [a task")
    task = str(outside) if stored == "outside" else stored
    sql(archive, "UPDATE campaign SET config = json_set(config, '$.task', ?)", task)
    result = cli("resume", "c", "--db", url(archive))
    assert result.exit_code == 2 and "invalid task name" in result.output, result.output


def test_task_templates_render_sandboxed(tmp_path, monkeypatch, outside_task):
    folder, marker = outside_task
    monkeypatch.setattr(tasks, "TASKS_DIR", folder.parent)
    load_task.cache_clear()
    try:
        spec = load_task("mirror_drift")  # now the hostile copy, chosen the honest way
        with pytest.raises(jinja2.exceptions.SecurityError):
            spec.render(source="x = 1\n")
    finally:
        load_task.cache_clear()
    assert not marker.exists()


# -- the JSON columns (Hypothesis) -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=5)
names = (f"fuzz-{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzzed") / "archive.db"


@FUZZ
@given(
    config=json_objects,
    data=json_objects,
    per_env=json_objects,
    stages=st.lists(json_objects, max_size=3),
    checks=json_values,
)
def test_any_json_value_round_trips_through_the_archive(
    fuzzed, config, data, per_env, stages, checks
):
    engine = open_engine(url(fuzzed))
    name = next(names)
    with transaction(engine) as s:
        campaign = Campaign(name=name, task="t", budget="smoke", proposer="p", config=config)
        s.add(campaign)
        s.flush()
        writes.log_event(s, campaign.id, "fuzz", data=data)
        candidate = writes.add_candidate(
            s,
            campaign,
            code=CODE.format(c=1),
            origin="mutation",
            operator="mutate",
            island=0,
            generation=0,
        )
    with transaction(engine) as s:
        writes.record_evaluation(
            s,
            candidate.id,
            Evaluation(Status.INVALID, None, per_env=per_env, stages=stages, checks=checks),
        )
    with transaction(open_reader(url(fuzzed))) as s:
        stored = reads.get_campaign(s, name)
        (event,) = reads.events(s, stored.id)
        (read,) = reads.candidates(s, stored.id)
    assert stored.config == config and event.data == (data or {})
    assert (read.per_env, read.stages, read.checks) == (per_env or {}, stages, checks)


COLUMNS = [
    (Campaign, "config"),
    (Candidate, "stages"),
    (Candidate, "per_env"),
    (Candidate, "checks"),
    (Candidate, "inspiration_ids"),
    (Event, "data"),
]
stored_strings = (
    st.text(max_size=200)
    | json_values.map(json.dumps)
    | st.sampled_from(["[" * 5000, "{not json", "NaN", "null", '{"generations": "x"}', ""])
)
examples = itertools.count()


@FUZZ
@given(column=st.sampled_from(COLUMNS), stored=stored_strings)
def test_any_stored_string_leaves_status_and_show_readable(template, tmp_path, column, stored):
    path = tmp_path / f"{next(examples)}.db"
    shutil.copy(template[0], path)
    table, name = column
    sql(path, f"UPDATE {table.__tablename__} SET {name} = ?", stored)
    for command in (
        ["status", "c"],
        ["archive", "show", template[1]["failed"]],
        ["archive", "show", template[1]["scored"]],
        ["archive", "show", template[1]["scored"], "--json"],
    ):
        result = cli(*command, "--db", url(path))
        if result.exit_code == 2:  # not JSON at all: one line naming the archive
            one_line(result, f"archive {path}", "not JSON")
        else:
            assert result.exit_code == 0, (command, stored, result.output, result.exception)
