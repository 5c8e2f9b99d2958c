"""Campaigns on a Ray cluster with a shared PostgreSQL archive (issue 8's acceptance).

A real local Ray cluster (ray.cluster_utils: a head and an extra worker node, each its own
raylet with one CPU) and a real PostgreSQL server (tests/postgres_server.py) run a smoke
campaign launched by the CLI with `--executor ray`. While an evaluation's sandbox is
running on the worker node, that node is killed outright (Ray retries the task); then the
campaign process itself is killed with SIGKILL and `scientist resume` restarts it against
the live cluster. The archive must then hold every candidate evaluated exactly once (a second
evaluation of a candidate is refused by the archive and would stop the campaign) or
recorded as failed, none left pending, none lost.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from postgres_server import create_database
from sqlmodel import Session, select

from archive.db import open_engine
from archive.schema import Campaign, Candidate, Event

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NAME = "on-ray"


def children(pid: int) -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            tree.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return tree


def runs_a_sandbox(root: int) -> bool:
    """Whether a sandboxed evaluation (python -m sandbox.stages) runs under process `root`."""
    tree, todo = children(root), [root]
    while todo:
        pid = todo.pop()
        try:
            if b"sandbox.stages" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
        todo.extend(tree.get(pid, []))
    return False


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def test_worker_and_campaign_killed_mid_campaign_lose_and_duplicate_nothing(
    cluster, postgres_url, tmp_path
):
    db = create_database(postgres_url)
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    raylet = worker.all_processes["raylet"][0].process.pid
    command = [
        sys.executable,
        "-m",
        "scientist.cli",
        "run",
        "--task",
        "mirror_drift",
        "--budget",
        "smoke",
        "--generations",
        "2",
        "--population",
        "2",
        "--islands",
        "1",
        "--workers",
        "2",
        "--batch",
        "2",  # batches of two: enough of them that the kill lands mid-campaign
        "--reevaluate-top",  # promotions in flight are test_campaign's kill -9 test's
        "0",
        "--sandbox",
        "process",
        "--executor",
        "ray",
        "--ray-address",
        cluster.address,
        "--name",
        NAME,
        "--db",
        db,
    ]
    log = tmp_path / "campaign.log"  # a file, not a pipe nobody drains while the test waits
    campaign = subprocess.Popen(command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not runs_a_sandbox(raylet):
            assert campaign.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                "no evaluation was ever scheduled on the worker node"
            )
            time.sleep(0.5)
        time.sleep(3)  # well into the evaluation
        cluster.remove_node(worker, allow_graceful=False)
        cluster.add_node(num_cpus=1)  # capacity comes back, as an autoscaler would bring it
        time.sleep(5)  # the lost evaluation is being retried
        # Then the campaign process itself dies (kill -9), and is restarted against the live
        # cluster.
        assert campaign.poll() is None, (
            f"the campaign ended before it could be killed: {log.read_text()[-3000:]}"
        )
        campaign.kill()
        campaign.wait()
        resumed = subprocess.run(
            [
                sys.executable,
                "-m",
                "scientist.cli",
                "resume",
                NAME,
                "--db",
                db,
                "--ray-address",
                cluster.address,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        if campaign.poll() is None:
            campaign.kill()
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    engine = open_engine(db)
    with Session(engine) as session:
        campaign_row = session.exec(select(Campaign).where(Campaign.name == NAME)).one()
        rows = session.exec(select(Candidate).where(Candidate.campaign_id == campaign_row.id)).all()
        events = [
            e.kind
            for e in session.exec(select(Event).where(Event.campaign_id == campaign_row.id)).all()
        ]
    assert campaign_row.status == "finished" and "start" in events and "resume" in events
    assert len(rows) >= 4  # 3 baselines and a proposal (more if one was a duplicate)
    statuses = {r.id: r.status for r in rows}
    assert "pending" not in statuses.values(), statuses
    evaluated = [r for r in rows if r.status not in ("duplicate", "no_code")]
    assert all(r.evaluated_at is not None and r.stages for r in evaluated)
    assert all(r.backend in ("process", "ray") for r in evaluated)
    ok = [r for r in rows if r.status == "ok"]
    assert len([r for r in ok if r.origin == "baseline"]) == 3 and all(
        r.fitness is not None for r in ok
    )
    failed = [r for r in rows if r.status not in ("ok", "duplicate", "no_code")]
    assert all(
        r.status in ("crashed", "invalid", "rejected", "failed", "timeout", "oom") for r in failed
    ), statuses
