"""`scientist check` runs candidate code only in the sandbox, under a time limit: the real
CLI in a subprocess, on candidates that act when their module is loaded."""

import json
import os
import subprocess
import sys
import time

import pytest

from sandbox.checks.pipeline import check_candidate
from sandbox.tasks import TASKS_DIR, load_task

HEADER = "import jax\nimport jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
DRIFT = HEADER + "    return 0.5 * (ratio - 1.0) ** 2\n\n\n"


def check(*args, timeout=300):
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "scientist.cli", "check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# Module-level compiles asking XLA to dump its programs to {target}: each spelling of the
# compiler options, line 9 in each.
DUMPS = {
    "keyword": "warm = jax.jit(drift, compiler_options={{'xla_dump_to': '{target}'}})(1.0, 1.0)\n",
    "dict unpacked into keywords": (
        "warm = jax.jit(drift, **{{'compiler_' + 'options': {{'xla_' + 'dump_to': '{target}'}}}})"
        "(1.0, 1.0)\n"
    ),
    "ahead-of-time compile": (
        "warm = jax.jit(drift).lower(1.0, 1.0).compile({{'xla_dump_to': '{target}'}})\n"
    ),
}


@pytest.mark.parametrize("spelling", DUMPS)
def test_module_level_compiler_dump_is_rejected_and_writes_nothing(tmp_path, spelling):
    """A candidate whose load would make XLA write files on the host (xla_dump_to) is
    rejected, naming the line, and no file appears at the target."""
    target = tmp_path / "dumped"
    candidate = tmp_path / "dump.py"
    candidate.write_text(DRIFT + DUMPS[spelling].format(target=target))
    result = check("--task", "mirror_drift", str(candidate), "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["assurance"] is None
    assert data["checks"][0]["name"] == "static" and "line 9" in data["checks"][0]["detail"]
    assert not target.exists()


def test_endless_loop_at_load_ends_with_the_time_limit_verdict(tmp_path):
    """A module-level loop that never ends (here one XLA cannot simplify away, forced by
    float()) no longer hangs check: the sandboxed run is killed at --timeout and the
    candidate rejected, in JSON and in one line for people."""
    candidate = tmp_path / "spin.py"
    candidate.write_text(
        DRIFT + "SPIN = float(jax.lax.while_loop(lambda c: c >= 0.0, lambda c: c + 1.0, 1.0))\n"
    )
    start = time.monotonic()
    result = check("--task", "mirror_drift", str(candidate), "--timeout", "6", "--json")
    assert time.monotonic() - start < 120  # 6 s, plus the sandbox's start on a busy host
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["assurance"] is None
    assert [c["name"] for c in data["checks"]] == ["static", "time_limit"]
    for record in data["checks"]:
        assert set(record) == {"name", "passed", "detail", "counterexample", "proof"}
    assert "did not finish in 6 s" in data["checks"][1]["detail"]
    assert "rejected: the check did not finish in 6 s" in result.stderr

    people = check("--task", "mirror_drift", str(candidate), "--timeout", "6")
    assert people.returncode == 1
    assert "rejected: the check did not finish in 6 s" in people.stdout


def test_honest_baseline_gets_the_report_the_pipeline_writes():
    """A shipped baseline is valid, with exactly the report the validity pipeline writes in
    a process of its own (what check printed before it ran in the sandbox), but for the
    certificate's timings."""
    path = TASKS_DIR / "mirror_drift/baselines/dpo.py"
    result = check("--task", "mirror_drift", str(path), "--json")
    assert result.returncode == 0, result.stderr
    expected = check_candidate(load_task("mirror_drift"), path.read_text(), filename=str(path))
    assert _untimed(json.loads(result.stdout)) == _untimed(
        json.loads(json.dumps(expected.to_dict()))
    )


def _untimed(report: dict) -> dict:
    for record in report["checks"]:
        if record["proof"]:
            record["proof"].pop("seconds")
    return report
