"""`scientist check` as a user (and the held-out labelled set) runs it."""

import json
import os
import subprocess
import sys

from sandbox.tasks import TASKS_DIR


def run(*args):
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "scientist.cli", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_valid_drift_exits_0_with_json_schema():
    result = run(
        "--task", "mirror_drift", str(TASKS_DIR / "mirror_drift/baselines/dpo.py"), "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["assurance"] == "certified"
    for check in data["checks"]:
        assert set(check) == {"name", "passed", "detail", "counterexample", "proof"}
        assert isinstance(check["passed"], bool) and isinstance(check["detail"], str)
    proofs = [c["proof"] for c in data["checks"] if c["proof"]]
    assert [p["verdict"] for p in proofs] == ["proved"] * 4
    assert all(isinstance(p["boxes"], int) and p["boxes"] > 0 for p in proofs)


def test_invalid_and_rejected_drifts_exit_1(tmp_path):
    kinked = tmp_path / "kink.py"
    kinked.write_text(
        "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n    return jnp.abs(ratio - 1.0)\n"
    )
    result = run("--task", "mirror_drift", str(kinked), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    slope = next(c for c in data["checks"] if c["name"] == "zero_slope_at_one")
    assert slope["passed"] is False and slope["counterexample"]["r"] == 1.0

    hostile = tmp_path / "hostile.py"
    hostile.write_text("import os\n\ndef drift(ratio, advantage):\n    return os.environ\n")
    result = run("--task", "mirror_drift", str(hostile), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["checks"][0]["name"] == "static"
    assert "line 1" in data["checks"][0]["detail"]


def test_usage_errors_exit_2(tmp_path):
    assert (
        run("--task", "no_such_task", str(TASKS_DIR / "mirror_drift/baselines/ppo.py")).returncode
        == 2
    )
    assert run("--task", "mirror_drift", str(tmp_path / "missing.py")).returncode == 2
    assert run().returncode == 2
