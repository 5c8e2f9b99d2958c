"""The warm scorer (harness/scoring.py): one process scores request after request with the
numbers a fresh one gives, and one that fails, hangs or loses its caller is never reused and
never outlives it. Artifacts are written here directly (untrained networks with the smoke
budget's shapes); what a sandbox leaves is the other tests' business."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import scoring
from sandbox.artifacts import write_training_artifact
from sandbox.budgets import get_budget
from sandbox.families import make_env
from sandbox.tasks import load_task
from sandbox.training.ppo import make_network
from sandbox.vocabulary import Fidelity, Status

BUDGET = get_budget("smoke")
TASK = load_task("mirror_drift")


def write_run(out: Path, seed: int) -> Path:
    """A training run's artifacts for every environment a full round trains."""
    out.mkdir(parents=True)
    for env_ids in TASK.split(BUDGET.name).trained(Fidelity.FULL).values():
        for env_id in env_ids:
            config, spec = BUDGET.config(env_id), make_env(env_id)
            network = make_network(config, spec)
            keys = jax.random.split(jax.random.key(seed), BUDGET.seeds)
            params = jax.vmap(lambda k: network.init(k, jnp.zeros((1, *spec.obs_shape))))(keys)
            # Scaled apart, so that the runs' policies (near uniform at init) really differ.
            params = jax.tree.map(lambda x: x * (1.0 + 50.0 * seed), params)
            write_training_artifact(out, env_id, params, np.linspace(0.0, 1.0, 5))
    return out


def ask(tmp_path: Path, dirs: list[Path]) -> list[dict]:
    return scoring.score(
        tmp_path / "request.json", TASK.name, BUDGET.name, dirs, [7] * len(dirs), [0] * len(dirs)
    )


def without_seconds(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k != "seconds"}


def warm_pids() -> list[int]:
    return [s.process.pid for s in scoring._idle]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [write_run(root / f"run{i}", seed=i) for i in range(2)]


@pytest.fixture(autouse=True)
def no_warm_scorers():
    scoring.close_all()
    yield
    scoring.close_all()


def test_a_warm_scorer_gives_what_a_fresh_process_gives_request_after_request(tmp_path, runs):
    first = ask(tmp_path, runs)
    (pid,) = warm_pids()
    second = ask(tmp_path, runs[::-1])
    assert warm_pids() == [pid]  # the same process answered both
    assert [v["status"] for v in first] == [Status.OK, Status.OK]
    strip = [without_seconds(v) for v in first]
    assert [without_seconds(v) for v in second] == strip[::-1]
    # The one-shot command, a fresh process, on the same request: the same numbers.
    request = json.loads((tmp_path / "request.json").read_text())
    (tmp_path / "one.json").write_text(json.dumps({**request, "out_dirs": [str(r) for r in runs]}))
    done = subprocess.run(
        [sys.executable, "-m", "harness.scorer", str(tmp_path / "one.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == strip
    assert strip[0]["per_env"] != strip[1]["per_env"]  # and the two runs really differ


def test_a_scorer_that_died_hung_or_failed_is_replaced_and_never_reused(tmp_path, runs):
    ask(tmp_path, runs[:1])
    (pid,) = warm_pids()
    os.kill(pid, signal.SIGKILL)  # died between requests: the next call starts a fresh one
    (verdict,) = ask(tmp_path, runs[:1])
    (fresh,) = warm_pids()
    assert verdict["status"] == Status.OK and fresh != pid
    # Hung: a request file nobody ever writes (a FIFO) holds the scorer until the deadline.
    os.mkfifo(tmp_path / "never")
    with pytest.raises(TimeoutError):
        scoring._ask(tmp_path / "never", timeout=1.0)
    assert warm_pids() == [] and _gone(fresh)  # killed, not pooled
    # A request the scorer cannot read ends its process: its error, and no process kept.
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(scoring.ScorerFailed, match="JSONDecodeError"):
        scoring._ask(tmp_path / "broken.json", timeout=900.0)
    assert warm_pids() == []


def test_a_scorer_ends_with_its_caller_even_mid_request(tmp_path, runs):
    """The caller is killed with -9 while its scorer waits on a request (a FIFO nobody
    writes): the scorer ends on its own."""
    os.mkfifo(tmp_path / "never")
    caller = (
        "import sys, threading, time\n"
        "from pathlib import Path\n"
        "from harness import scoring\n"
        f"threading.Thread(target=scoring._ask, args=(Path({str(tmp_path / 'never')!r}), 900.0),"
        " daemon=True).start()\n"
        "print('asked', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", caller], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "asked\n"
    deadline = time.monotonic() + 60
    while not (scorers := _children(process.pid, b"harness.scorer")):
        assert time.monotonic() < deadline, "no scorer started"
        time.sleep(0.1)
    time.sleep(2.0)  # let it import and reach the request it will wait on
    process.kill()
    process.wait()
    deadline = time.monotonic() + 60
    while not _gone(scorers[0]):
        assert time.monotonic() < deadline, "the scorer outlived its caller"
        time.sleep(0.2)


def _children(parent: int, marker: bytes) -> list[int]:
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [pid for pid in pids if _parent(pid) == parent and marker in _cmdline(pid)]


def _gone(pid: int) -> bool:
    """Ended (a zombie not yet reaped by its parent counts as ended)."""
    return _parent(pid) is None


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[1])


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
