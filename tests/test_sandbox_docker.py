"""The Docker backend against a real engine (CI installs docker.io and starts dockerd via
scripts/install-system-deps.sh). Skipped, with the reason, where no engine answers."""

import shutil
import socket
import subprocess

import pytest

from sandbox.backends import Limits, SandboxRun, SandboxUnavailable
from sandbox.backends.process import new_scratch
from sandbox.cascade import evaluate_candidate
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
    from sandbox.backends.docker import DockerBackend

    try:
        backend = DockerBackend()
        backend.preflight()
    except SandboxUnavailable as error:
        pytest.skip(f"Docker backend unavailable here: {error}")
    return backend


def test_container_is_hardened(backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    probe = (
        "import os, socket\n"
        "status = open('/proc/self/status').read()\n"
        "print('UID', os.getuid())\n"
        "print('CAPEFF', status.split('CapEff:')[1].split()[0], 'NNP', status.split('NoNewPrivs:')[1].split()[0])\n"
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
    flood = run(backend, "import sys\nwhile True: sys.stdout.write('x' * 65536)", Limits(output_bytes=1_000_000))
    assert flood.output_exceeded
    bomb = run(backend, "import jax.numpy as jnp\nprint(jnp.ones((40000, 40000)).sum())", Limits(memory_bytes=2 * 1024**3))
    assert bomb.exit_code == -9 or "RESOURCE_EXHAUSTED" in bomb.log_tail
    assert backend.client.containers.list(all=True, filters={"label": "rl-scientist.sandbox"}) == []


def test_leftover_containers_are_swept_at_start(backend):
    from sandbox.backends.docker import LABEL, DockerBackend

    dead, alive = subprocess.Popen(["true"]), subprocess.Popen(["sleep", "60"])
    dead.wait()
    host = socket.gethostname()
    backend.client.containers.create(backend.image, command=["/bin/true"], labels={LABEL: f"{host}:{dead.pid}"})
    live = backend.client.containers.create(backend.image, command=["/bin/true"], labels={LABEL: f"{host}:{alive.pid}"})
    try:
        DockerBackend()
        # The dead process's container is gone; a live runner's evaluation is left alone.
        assert [c.id for c in backend.client.containers.list(all=True, filters={"label": LABEL})] == [live.id]
    finally:
        alive.kill()
        live.remove(force=True)


def test_baseline_evaluates_ok_and_hostile_ones_do_not_score(backend):
    task = load_task("mirror_drift")
    result = evaluate_candidate("mirror_drift", task.baseline_source("dpo"), "smoke", sandbox="docker")
    assert result.status == "ok" and result.backend == "docker", [(s.name, s.status, s.detail) for s in result.stages]
    assert result.fitness is not None and set(result.per_env["meta_test"]) == {"Acrobot-v1"}
    limits = {"trace": 20.0, "validity": 25.0, "smoke": 40.0, "full": 90.0}
    for source, expected in (
        ("import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n    while True:\n        pass\n", "timeout"),
        ("import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n    return ratio * jnp.nan\n", "invalid"),
    ):
        hostile = evaluate_candidate("mirror_drift", source, "smoke", sandbox="docker", stage_seconds=limits)
        assert hostile.status == expected and hostile.fitness is None
