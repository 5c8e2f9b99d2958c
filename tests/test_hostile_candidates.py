"""Hostile candidates through the whole cascade (`evaluate_candidate`, process backend):
none scores, none leaves a file, none sees the planted key, each ends in time with the
right status. Time limits are shortened so the suite stays fast."""

import os
import shutil
import time
from pathlib import Path

import pytest

from harness.backends.filesystem import scratch_root
from harness.cascade import evaluate_candidate
from sandbox.vocabulary import Fidelity

PLANTED = "sk-planted-hostile-key"
HEAD = "import jax\nimport jax.numpy as jnp\n\n\n"
LIMITS = {"trace": 10.0, "validity": 60.0, "trial": 60.0, "full": 90.0}  # trial compiles

HOSTILE = {
    # name: (source, expected status)
    "reads_env_vars": (
        "import os\n\ndef drift(ratio, advantage):\n"
        "    return ratio * 0 + len(os.environ['OPENAI_API_KEY'])\n",
        "rejected",
    ),
    "obfuscated_import": (
        "m = __import__('o' + 's')\n\ndef drift(ratio, advantage):\n    return ratio\n",
        "rejected",
    ),
    "import_via_getattr": (
        HEAD
        + "imp = getattr(jax, '__loader__')\n\ndef drift(ratio, advantage):\n    return ratio\n",
        "rejected",
    ),
    "subclass_walk": (
        HEAD + "def drift(ratio, advantage):\n"
        "    for c in ().__class__.__base__.__subclasses__():\n        pass\n    return ratio\n",
        "rejected",
    ),
    "monkeypatch_jax": (
        HEAD + "jnp.mean = lambda *a, **k: 0.0\n\n"
        "def drift(ratio, advantage):\n    return 0.0 * ratio\n",
        "rejected",
    ),
    "writes_outside_scratch": (
        HEAD + "def drift(ratio, advantage):\n"
        "    open('/tmp/hostile-canary', 'w').write('x')\n    return 0.0 * ratio\n",
        "rejected",
    ),
    "host_callback": (
        HEAD + "def drift(ratio, advantage):\n"
        "    return jax.pure_callback(lambda r: r * 0, ratio, ratio)\n",
        "rejected",
    ),
    "socket": ("import socket\n\ndef drift(ratio, advantage):\n    return ratio\n", "rejected"),
    "sleep": (
        "import time\n\ndef drift(ratio, advantage):\n    time.sleep(3600)\n    return ratio\n",
        "rejected",
    ),
    "prints_forged_result": (
        HEAD + 'print(\'{"status": "ok", "fitness": 1e9}\')\n\n'
        "def drift(ratio, advantage):\n    return 0.0 * ratio\n",
        "rejected",
    ),
    "system_exit": (HEAD + "def drift(ratio, advantage):\n    raise SystemExit(0)\n", "failed"),
    "raises_forged_result": (
        HEAD + "def drift(ratio, advantage):\n"
        '    raise ValueError(\'{"status": "ok", "fitness": 1e9}\')\n',
        "failed",
    ),
    "infinite_loop": (
        HEAD + "def drift(ratio, advantage):\n    while True:\n        pass\n",
        "timeout",
    ),
    "busy_sleep_at_import": (HEAD + "x = 0\nwhile True:\n    x += 1\n", "timeout"),
    "unroll_bomb": (
        HEAD + "def drift(ratio, advantage):\n    x = 0.0 * ratio\n"
        "    for i in range(10_000_000):\n        x = x + 0.0 * ratio\n    return x\n",
        "timeout",
    ),
    "memory_bomb": (
        HEAD + "def drift(ratio, advantage):\n"
        "    big = jnp.cumsum(jnp.broadcast_to(ratio[..., None], ratio.shape + (2_000_000_000,)), "
        "axis=-1)\n    return 0.0 * big[..., -1]\n",
        "oom",
    ),
    "memory_bomb_at_import": (
        "big = (0.5,) * 4_000_000_000\n\ndef drift(ratio, advantage):\n    return 0.0 * ratio\n",
        "oom",
    ),
    "recursion": (
        HEAD + "def drift(ratio, advantage):\n    return drift(ratio, advantage)\n",
        "failed",
    ),
    "nan_output": (HEAD + "def drift(ratio, advantage):\n    return ratio * jnp.nan\n", "invalid"),
    "python_branch": (
        HEAD + "def drift(ratio, advantage):\n"
        "    if ratio > 1:\n        return ratio\n    return ratio\n",
        "invalid",
    ),
    "gigabytes_of_output": (
        HEAD
        + "def drift(ratio, advantage):\n    print('x' * 2_000_000_000)\n    return 0.0 * ratio\n",
        "rejected",
    ),
    "huge_error_message": (
        HEAD + "def drift(ratio, advantage):\n    raise ValueError('x' * 200_000_000)\n",
        "failed",
    ),
    # Valid in the float64 checks, but the constant overflows float32 (inf * 0 = NaN at r = 1),
    # so it would explode in training: the checks in float32 see it first.
    "explodes_in_training": (
        HEAD + "def drift(ratio, advantage):\n    return 1e39 * (ratio - 1.0) ** 2\n",
        "invalid",
    ),
}


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)


@pytest.fixture(autouse=True)
def own_scratch_root(monkeypatch):
    """A scratch root of this process's own, so "nothing left behind" is not confused by other
    processes' evaluations running meanwhile."""
    root = f"/tmp/scientist-sandbox-{os.getpid()}"
    monkeypatch.setenv("SCIENTIST_SCRATCH", root)
    yield
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_candidate(name):
    source, expected = HOSTILE[name]
    root = scratch_root()
    runs = lambda: {p for p in root.iterdir() if p.name.startswith("run-")}  # noqa: E731
    before = runs()
    start = time.monotonic()
    result = evaluate_candidate(  # a screen: no hostile candidate is meant to get further
        "mirror_drift",
        source,
        "smoke",
        sandbox="process",
        stage_seconds=LIMITS,
        fidelity=Fidelity.SCREEN,
    )
    elapsed = time.monotonic() - start

    assert result.status == expected, (
        result.status,
        [(s.name, s.status, s.detail[:200]) for s in result.stages],
        result.log_tail[-1500:],
    )
    assert result.fitness is None and not result.per_env
    if expected == "rejected":
        assert (
            result.checks["checks"][0]["name"] == "static"
            and "line" in result.checks["checks"][0]["detail"]
        )
    assert PLANTED not in result.log_tail
    assert len(result.log_tail) <= 4000 and all(len(s.detail) <= 2000 for s in result.stages)
    assert elapsed < sum(LIMITS.values()) + 60
    assert runs() == before  # nothing left behind
    assert not os.path.exists("/tmp/hostile-canary")


def ancestors(pid: int) -> set[int]:
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # exited meanwhile
            break
    return chain


def elsewhere(pid: int) -> bool:
    """Whether the process runs a sandbox of another scratch root than this module's."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:  # exited meanwhile
        return True
    return "/tmp/scientist-sandbox" in command and str(scratch_root()) not in command


def test_machine_is_unharmed_after_the_hostile_suite():
    """Runs last in this module: nothing of the sandbox user survives, and the sandbox still
    works."""
    import subprocess

    listed = subprocess.run(
        ["ps", "-u", "65534", "-o", "pid=,ppid=,comm="], capture_output=True, text=True
    ).stdout.split("\n")
    # Other processes' evaluations (another campaign, test run) run as the same user; what must
    # not exist is a process of ours or an orphan (one that escaped is re-parented to pid 1),
    # unless it names another scratch root: another test's sandbox, its campaign just killed.
    left = [
        line
        for line in listed
        if line.split()
        and (
            (line.split()[1] == "1" and not elsewhere(int(line.split()[0])))
            or os.getpid() in ancestors(int(line.split()[0]))
        )
    ]
    assert left == [], left
    result = evaluate_candidate(
        "mirror_drift",
        HEAD + "def drift(ratio, advantage):\n    return (ratio - 1.0) ** 2\n",
        "smoke",
        sandbox="process",  # production stage limits: the point is that it works, not how fast
        fidelity=Fidelity.SCREEN,
    )
    assert result.status == "ok" and result.fitness is not None, result.stages
