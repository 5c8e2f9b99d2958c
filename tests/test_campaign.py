"""A real discovery campaign from the CLI: the default mutation proposer, the process
sandbox, the smoke budget, a SQLite archive. It is killed with SIGKILL at random moments
(during proposals, evaluations and writes) and resumed until it finishes; the archive must
then hold every planned evaluation exactly once and be consistent. A smaller campaign on the
Docker sandbox is killed mid-evaluation and resumed at once, with the same checks.

Slow: about 8 minutes on 2 CPU cores (every candidate trains for real)."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

PLAN = dict(generations=2, population=1, islands=2)
BASELINES = 3  # mirror_drift: dpo, ppo, zero


def scientist(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "scientist.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        **kwargs,
    )


def evaluated(path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(
                "SELECT count(*) FROM candidate WHERE status NOT IN ('pending')"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def campaign_exists(path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            return db.execute("SELECT count(*) FROM campaign").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc, so other tests' sandboxes do not count)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # it exited meanwhile
        return b""


def alive(pids: set[int]) -> set[int]:
    still = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    still.add(pid)
        except OSError:
            pass
    return still


def campaign_command(db: str, name: str, plan: dict, sandbox: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scientist.cli",
        "run",
        "--task",
        "mirror_drift",
        "--budget",
        "smoke",
        "--generations",
        str(plan["generations"]),
        "--population",
        str(plan["population"]),
        "--islands",
        str(plan["islands"]),
        "--workers",
        "2",
        "--sandbox",
        sandbox,
        "--seed",
        "3",
        # every proposal promoted, one fresh block each: kills fall on promotions too
        "--reevaluate-top",
        "10",
        "--reevaluation-blocks",
        "1",
        "--name",
        name,
        "--db",
        db,
    ]


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    path = tmp_path_factory.mktemp("campaign") / "archive.db"
    db = f"sqlite:///{path}"
    command = campaign_command(db, "crashy", PLAN, "process")
    # `resumable` counts the launches that found the campaign already in the archive: an early
    # kill may land before the first launch has created it.
    rng, kills, resumable = random.Random(7), [], 0
    # An early kill (start-up, baselines being written), then kills a random moment after the
    # archive has moved on, so each one lands in a different phase of the campaign.
    for target in (0, 1, 3, 5):
        resumable += campaign_exists(path)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while evaluated(path) < target and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
        time.sleep(rng.uniform(0.5, 8.0) if target else 2.0)
        if process.poll() is not None:
            break
        children = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(evaluated(path))
        time.sleep(2.0)
        # Sandboxes die with their campaign (the trusted scorer, if one was running, finishes on
        # its own).
        leftovers = [pid for pid in alive(children) if b"sandbox.stages" in cmdline(pid)]
        assert not leftovers, "a sandboxed evaluation outlived its killed campaign"
    resumable += campaign_exists(path)
    final = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return path, db, kills, resumable, final


def assert_finished_with_every_evaluation_exactly_once(
    path, plan: dict, resumable: int, final
) -> None:
    """`resumable`: how many launches found the campaign in the archive; each of them resumes
    it, though a kill may land before its "resume" event is written (not the last one)."""
    assert final.returncode == 0, final.stderr[-3000:]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("SELECT status FROM campaign").fetchone()[0] == "finished"
    rows = db.execute(
        "SELECT id, origin, status, generation, island, fitness, code_hash, parent_id, "
        "evaluated_at FROM candidate ORDER BY id"
    ).fetchall()
    assert not [r for r in rows if r[2] == "pending"]
    assert sorted(r[1] for r in rows if r[1] == "baseline") == ["baseline"] * BASELINES
    # Each slot (generation, island) holds exactly `population` new candidates.
    for generation in range(1, plan["generations"] + 1):
        for island in range(plan["islands"]):
            new = [
                r
                for r in rows
                if r[3:5] == (generation, island) and r[2] not in ("duplicate", "no_code")
            ]
            assert len(new) == plan["population"], (generation, island, new)
    # Evaluated once: one verdict and timestamp each, no code evaluated under two rows.
    judged = [r for r in rows if r[2] not in ("duplicate", "no_code")]
    assert all(r[8] is not None for r in judged)
    assert len({r[6] for r in judged}) == len(judged)
    # Island bookkeeping matches the candidates: scored ones rank by their fitness less a
    # standard error (never above it), others are gone.
    members = db.execute("SELECT candidate_id, island, fitness FROM island_member").fetchall()
    fitness = {r[0]: r[5] for r in rows}
    assert all(f is not None and f <= fitness[c] + 1e-9 for c, _, f in members)
    assert {c for c, _, _ in members} == {r[0] for r in rows if r[2] == "ok"}
    # Every scored candidate has its search round; elites were re-evaluated, none left held,
    # and each (candidate, block) was trained once (the database enforces it).
    rounds = db.execute("SELECT candidate_id, block FROM evaluation_round").fetchall()
    assert {c for c, b in rounds if b == 0} >= {r[0] for r in rows if r[2] == "ok"}
    reviews = dict(db.execute("SELECT id, review FROM candidate").fetchall())
    assert "held" not in reviews.values()
    assert {c for c, b in rounds if b > 0} >= {c for c, v in reviews.items() if v}
    # Fidelity: proposals are screened and the promoted ones trained every environment; no
    # candidate is stuck between the two, however the kills fell on promotions in flight.
    fidelity = dict(db.execute("SELECT id, fidelity FROM candidate WHERE status = 'ok'"))
    origin = {r[0]: r[1] for r in rows}
    assert "reevaluated" in reviews.values()  # the campaign had promotions to interrupt
    assert None not in fidelity.values()
    for c, level in fidelity.items():
        assert level == ("full" if reviews[c] or origin[c] == "baseline" else "screen"), c
    # Lineage: every parent is an earlier, scored member of the child's island.
    member_of = {(c, i) for c, i, _ in members}
    for r in rows:
        if r[7] is not None:
            assert r[7] < r[0] and (r[7], r[4]) in member_of, r
    events = [e[0] for e in db.execute("SELECT kind FROM event ORDER BY id")]
    assert events.count("start") == 1 and 1 <= events.count("resume") <= resumable, events


def test_resume_after_kill_9_finishes_with_every_evaluation_exactly_once(killed_and_resumed):
    path, _, kills, resumable, final = killed_and_resumed
    assert len(kills) >= 3, kills
    assert_finished_with_every_evaluation_exactly_once(path, PLAN, resumable, final)


def test_kill_9_mid_evaluation_on_the_docker_backend_then_resume_at_once(tmp_path):
    """The same promise with the Docker sandbox, whose containers do not die with the
    campaign: killed while its evaluations run in containers, resumed at once (the new
    runner sweeps the dead one's containers while they may still be going away), nothing
    is lost or evaluated twice and no container is left."""
    from harness.backends import SandboxUnavailable
    from harness.backends.docker import LABEL, DockerBackend

    try:
        docker = DockerBackend()
    except SandboxUnavailable as error:
        pytest.skip(f"Docker backend unavailable here: {error}")
    docker.preflight()  # an engine answers: a sandbox that cannot start in it is a failure
    plan = dict(generations=1, population=1, islands=1)
    path = tmp_path / "archive.db"
    command = campaign_command(f"sqlite:///{path}", "crashy-docker", plan, "docker")

    def containers(owner_pid: int, **filters) -> list:
        return [
            c
            for c in docker.client.containers.list(
                all=True, filters={"label": LABEL, **filters}, ignore_removed=True
            )
            if c.labels.get(LABEL, "").endswith(f":{owner_pid}")
        ]

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 400
    while (
        time.monotonic() < deadline
        and process.poll() is None
        and not (evaluated(path) >= 1 and containers(process.pid, status="running"))
    ):
        time.sleep(0.5)
    assert process.poll() is None, "the campaign ended before it could be killed mid-evaluation"
    time.sleep(2.0)
    assert containers(process.pid, status="running"), "no evaluation was running at the kill"
    process.send_signal(signal.SIGKILL)
    process.wait()
    final = subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "resume",
            "crashy-docker",
            "--db",
            f"sqlite:///{path}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert_finished_with_every_evaluation_exactly_once(path, plan, 1, final)
    assert "Traceback" not in final.stderr, final.stderr[-3000:]
    assert containers(process.pid) == [], "the killed campaign's containers were left behind"
    backends = {
        b
        for (b,) in sqlite3.connect(path).execute(
            "SELECT backend FROM candidate WHERE backend != ''"
        )
    }
    assert backends == {"docker"}


def test_status_and_archive_commands_read_the_campaign(killed_and_resumed):
    _, db, _, _, final = killed_and_resumed
    assert "top" in final.stdout and "fitness" in final.stdout  # the leaderboard printed at the end
    status = scientist("status", "crashy", "--db", db)
    assert status.returncode == 0 and "finished" in status.stdout and "$0.0000" in status.stdout
    listed = scientist("archive", "list", "crashy", "--json", "--db", db)
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert records and all(r["status"] == "ok" for r in records[:1])
    everything = [
        json.loads(line)
        for line in scientist(
            "archive", "list", "crashy", "--json", "--db", db, "--top", "100"
        ).stdout.splitlines()
    ]
    assert [r["fitness"] for r in everything] == sorted(
        (r["fitness"] for r in everything), reverse=True
    )
    child = (
        next(r for r in everything if r["parent_id"] is not None)
        if any(r["parent_id"] for r in everything)
        else everything[0]
    )
    shown = json.loads(scientist("archive", "show", str(child["id"]), "--json", "--db", db).stdout)
    assert shown["code"].startswith("import") and shown["lineage"][0] == child["id"]
    assert {s["name"] for s in shown["stages"]} >= {
        "static",
        "trace",
        "validity",
        "trial",
        "full",
        "score",
    }
    assert shown["per_env"]["meta_train"]["CartPole-v1"]["learning_curve"]
    text = scientist("archive", "show", str(child["id"]), "--db", db)
    assert text.returncode == 0 and "def drift" in text.stdout
    diff = scientist(
        "archive", "diff", str(everything[0]["id"]), str(everything[-1]["id"]), "--db", db
    )
    assert diff.returncode == 0 and ("@@" in diff.stdout or "identical" in diff.stdout)
    missing = scientist("status", "nope", "--db", db)
    assert missing.returncode == 2 and "crashy" in missing.stderr


def test_a_second_runner_of_a_live_campaign_is_refused(tmp_path):
    """Two processes running one campaign would evaluate its pending candidates twice."""
    db = f"sqlite:///{tmp_path}/archive.db"
    args = [
        "run",
        "--task",
        "mirror_drift",
        "--budget",
        "smoke",
        "--generations",
        "0",
        "--sandbox",
        "process",
        "--name",
        "solo",
        "--db",
        db,
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "scientist.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sqlite3.connect(f"{tmp_path}/archive.db", timeout=30) as conn:
                try:
                    if conn.execute("SELECT runner_pid FROM campaign").fetchone()[0]:
                        break
                except (sqlite3.Error, TypeError):
                    pass
            time.sleep(0.5)
        second = scientist(*args)
        assert second.returncode == 1 and "already running" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
