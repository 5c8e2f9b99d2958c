"""The Docker backend against a real engine (CI installs docker.io and starts dockerd via
scripts/install-system-deps.sh). Skipped, with the reason, where no engine answers; failed
where one answers and the sandbox cannot start in it."""

import shutil
import socket
import subprocess

import pytest

from harness.backends import Limits, SandboxInfraError, SandboxRun, SandboxUnavailable
from harness.backends.filesystem import new_scratch
from harness.cascade import evaluate_candidate
from sandbox.tasks import load_task

PLANTED = "sk-planted-docker-key"


def run(backend, code, limits=None):
    scratch = new_scratch()
    try:
        return backend.run(SandboxRun(("-c", code), scratch, limits or Limits()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def backend():
    from harness.backends.docker import DockerBackend

    try:
        backend = DockerBackend()
    except SandboxUnavailable as error:
        pytest.skip(f"Docker backend unavailable here: {error}")
    # An engine answers: from here a sandbox that cannot start is our failure, not a skip
    # (code the container needs left out of its mounts once went unnoticed that way).
    backend.preflight()
    return backend


def test_container_is_hardened(backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    probe = (
        "import os, socket\n"
        "status = open('/proc/self/status').read()\n"
        "print('UID', os.getuid())\n"
        "print('CAPEFF', status.split('CapEff:')[1].split()[0], "
        "'NNP', status.split('NoNewPrivs:')[1].split()[0])\n"
        "print('KEY' if any('sk-planted' in v for v in os.environ.values()) else 'NOKEY')\n"
        "for p in ('/usr/canary', '/etc/canary', os.environ['HOME'] + '/ok'):\n"
        "    try:\n        open(p, 'w').write('x'); print('WROTE', p)\n"
        "    except OSError:\n        print('NOWRITE', p)\n"
        "try:\n    socket.create_connection(('10.255.255.1', 80), timeout=2); print('NET-OPEN')\n"
        "except OSError as e:\n    print('NET', type(e).__name__)\n"
    )
    outcome = run(backend, probe)
    lines = outcome.log_tail.splitlines()
    assert outcome.exit_code == 0, outcome.log_tail
    assert "UID 65534" in lines and "CAPEFF 0000000000000000 NNP 1" in lines and "NOKEY" in lines
    assert not any(line.startswith("WROTE /usr") or line.startswith("WROTE /etc") for line in lines)
    assert "NET-OPEN" not in lines


def test_limits_and_cleanup(backend):
    loop = run(backend, "while True: pass", Limits(wall_seconds=3))
    assert loop.timed_out and loop.exit_code == -9
    flood = run(
        backend,
        "import sys\nwhile True: sys.stdout.write('x' * 65536)",
        Limits(output_bytes=1_000_000),
    )
    assert flood.output_exceeded
    bomb = run(
        backend,
        "import jax.numpy as jnp\nprint(jnp.ones((40000, 40000)).sum())",
        Limits(memory_bytes=2 * 1024**3),
    )
    assert bomb.exit_code == -9 or "RESOURCE_EXHAUSTED" in bomb.log_tail
    assert our_containers(backend) == []  # other processes' evaluations may be running


def test_leftover_containers_are_swept_at_start(backend):
    from harness.backends.docker import LABEL, DockerBackend

    dead, alive = subprocess.Popen(["true"]), subprocess.Popen(["sleep", "60"])
    dead.wait()
    host = socket.gethostname()
    backend.client.containers.create(
        backend.image, command=["/bin/true"], labels={LABEL: f"{host}:{dead.pid}"}
    )
    live = backend.client.containers.create(
        backend.image, command=["/bin/true"], labels={LABEL: f"{host}:{alive.pid}"}
    )
    try:
        DockerBackend()

        # The dead process's container is gone; a live runner's evaluation is left alone.
        # (Only these two labels are looked at: another test worker's evaluations may be live.)
        def labelled(pid: int) -> list[str]:
            filters = {"label": f"{LABEL}={host}:{pid}"}
            return [
                c.id
                for c in backend.client.containers.list(
                    all=True, filters=filters, ignore_removed=True
                )
            ]

        assert labelled(dead.pid) == [] and labelled(alive.pid) == [live.id]
    finally:
        alive.kill()
        live.remove(force=True)


def test_hostile_candidates_do_not_score(backend):
    """(The DPO baseline evaluating ok on this backend is tests/test_sandbox_layouts.py's.)"""
    limits = {"trace": 20.0, "validity": 25.0, "trial": 60.0, "full": 90.0}
    for source, expected in (
        (
            "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
            "    while True:\n        pass\n",
            "timeout",
        ),
        (
            "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n    return ratio * jnp.nan\n",
            "invalid",
        ),
    ):
        hostile = evaluate_candidate(
            "mirror_drift", source, "smoke", sandbox="docker", stage_seconds=limits
        )
        assert hostile.status == expected and hostile.fitness is None


def broken_backend():
    """A real engine refusing a real container: a mount at a path missing from the read-only
    code snapshot, the failure a `.venv` inside the checkout once caused."""
    from harness.backends.docker import DockerBackend
    from harness.backends.filesystem import REPO_ROOT

    class BrokenMounts(DockerBackend):
        def _mounts(self, run):
            return [
                *super()._mounts(run),
                self.docker.types.Mount(
                    str(REPO_ROOT / "no-such-mount-point"),
                    str(run.scratch),
                    type="bind",
                    read_only=True,
                ),
            ]

    return BrokenMounts()


def our_containers(backend) -> list:
    from harness.backends.docker import LABEL, _owner

    return backend.client.containers.list(
        all=True, filters={"label": f"{LABEL}={_owner()}"}, ignore_removed=True
    )


def test_an_engine_error_is_an_infra_failure_in_one_line_and_fails_the_preflight(backend):
    broken = broken_backend()
    with pytest.raises(SandboxInfraError) as raised:
        run(broken, "print('never runs')")
    assert "read-only file system" in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(SandboxUnavailable) as raised:
        broken.preflight()
    assert "cannot run" in str(raised.value) and "\n" not in str(raised.value)
    assert our_containers(backend) == []


def test_auto_falls_back_past_a_backend_that_fails_its_preflight(backend, monkeypatch, caplog):
    import harness.backends as backends
    from harness.backends.process import ProcessBackend

    monkeypatch.setattr(backends, "_ready", {})
    monkeypatch.setattr(
        backends, "_make", lambda name: broken_backend() if name == "docker" else ProcessBackend()
    )
    with caplog.at_level("WARNING", logger="harness.backends"):
        chosen = backends.get_backend("auto")
    assert chosen.name == "process"
    notes = [r.getMessage() for r in caplog.records if r.name == "harness.backends"]
    assert (
        len(notes) == 1
        and "docker" in notes[0]
        and "using process" in notes[0]
        and "\n" not in notes[0]
    )

    monkeypatch.setattr(backends, "_ready", {})
    monkeypatch.setattr(
        backends,
        "_make",
        lambda name: (
            broken_backend() if name == "docker" else ProcessBackend(python="/nonexistent/python3")
        ),
    )
    with pytest.raises(SandboxUnavailable) as raised:
        backends.get_backend("auto")
    message = str(raised.value)
    assert (
        message.startswith("no sandbox backend works here")
        and "docker:" in message
        and "process:" in message
    )
    assert "\n" not in message


def test_an_infra_failure_is_no_verdict_and_stops_a_campaign_leaving_it_pending(
    backend, monkeypatch, tmp_path
):
    """Through the real cascade and campaign loop: the sandbox failing under a candidate is
    retried, then reported as `infra` with its reason; the campaign stops with one line, and
    the archive records the reason and keeps every candidate pending for resume."""
    import harness.cascade as cascade
    from archive import reads
    from archive.db import open_engine, transaction
    from scientist.campaign.config import CampaignConfig
    from scientist.campaign.loop import CampaignLoop
    from scientist.proposers.mutation import MutationProposer

    broken = broken_backend()
    monkeypatch.setattr(cascade, "get_backend", lambda name: broken)
    monkeypatch.setattr(cascade, "INFRA_RETRY_SECONDS", (0.1, 0.1))
    task = load_task("mirror_drift")
    result = evaluate_candidate(
        "mirror_drift", task.baseline_source("dpo"), "smoke", sandbox="docker"
    )
    assert result.status == "infra" and result.fitness is None
    assert [(s.name, s.status) for s in result.stages] == [("static", "ok"), ("sandbox", "infra")]
    assert (
        "read-only file system" in result.stages[-1].detail
        and "tried 3 times" in result.stages[-1].detail
    )

    engine = open_engine(f"sqlite:///{tmp_path}/archive.db")
    config = CampaignConfig(
        name="infra", task="mirror_drift", generations=0, sandbox="docker", workers=1
    )
    runner = CampaignLoop(engine, config, MutationProposer(task))
    with pytest.raises(SandboxInfraError) as raised:
        runner.run()
    assert "left pending" in str(raised.value) and "\n" not in str(raised.value)
    with transaction(engine) as session:
        campaign = reads.get_campaign(session, "infra")
        assert campaign.status == "failed" and "left pending" in campaign.message
        assert {c.status for c in reads.candidates(session, campaign.id)} == {"pending"}
        assert [e.kind for e in reads.events(session, campaign.id, 50)].count("infra") == 1
    assert our_containers(backend) == []


def test_the_sweep_tolerates_containers_already_going_away(backend):
    """Two runners sweeping at once race for the same leftovers (404 or 409 for the loser);
    a stale handle to a removed container is the same case."""
    import threading

    from harness.backends.docker import LABEL, DockerBackend

    dead = subprocess.Popen(["true"])
    dead.wait()
    label = {LABEL: f"{socket.gethostname()}:{dead.pid}"}
    gone = backend.client.containers.create(backend.image, command=["/bin/true"], labels=label)
    backend.client.containers.get(gone.id).remove(force=True)
    assert backend._remove(gone) is False  # 404: already gone, no error
    for _ in range(6):
        backend.client.containers.create(backend.image, command=["/bin/true"], labels=label)
    errors = []

    def sweep():
        try:
            DockerBackend()
        except Exception as error:  # the test's point: nothing may escape a sweep
            errors.append(error)

    sweepers = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in sweepers:
        thread.start()
    for thread in sweepers:
        thread.join()
    assert errors == []
    assert (
        backend.client.containers.list(
            all=True, filters={"label": f"{LABEL}={label[LABEL]}"}, ignore_removed=True
        )
        == []
    )
