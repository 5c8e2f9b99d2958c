"""`scientist evaluate` end to end on the process backend, as a user and the held-out
hostile set run it. (The DPO baseline from every interpreter layout and on both backends is
tests/test_sandbox_layouts.py's.)"""

import json
import os
import subprocess
import sys

from sandbox.tasks import TASKS_DIR


def run(*args):
    env = {**os.environ, "COLUMNS": "400", "OPENAI_API_KEY": "sk-planted-cli-key"}
    return subprocess.run(
        [sys.executable, "-m", "scientist.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def test_ppo_baseline_evaluates_ok_with_the_documented_json():
    result = run(
        "--task",
        "mirror_drift",
        str(TASKS_DIR / "mirror_drift/baselines/ppo.py"),
        "--budget",
        "smoke",
        "--sandbox",
        "process",
        "--json",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["status"] == "ok" and isinstance(data["fitness"], float)
    assert set(data["per_env"]) == {"meta_train", "meta_test"}
    train, test = (
        data["per_env"]["meta_train"]["CartPole-v1"],
        data["per_env"]["meta_test"]["Acrobot-v1"],
    )
    for env in (train, test):
        assert len(env["returns"]) == 2 and env["normalised"]["iqm"] is not None
        # 2 seeds: too few for an interval of checked coverage (sandbox/fitness.py)
        assert env["normalised"]["ci_low"] is None and env["normalised"]["ci_high"] is None
    assert [s["name"] for s in data["stages"]] == [
        "static",
        "trace",
        "validity",
        "trial",
        "full",
        "score",
    ]
    assert all(s["status"] == "ok" and s["seconds"] >= 0 for s in data["stages"])
    assert "log_tail" in data and "sk-planted" not in result.stdout


def test_invalid_candidate_exits_1_with_counterexamples(tmp_path):
    kinked = tmp_path / "kink.py"
    kinked.write_text(
        "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n    return jnp.abs(ratio - 1.0)\n"
    )
    result = run(
        "--task", "mirror_drift", str(kinked), "--budget", "smoke", "--sandbox", "process", "--json"
    )
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["status"] == "invalid" and data["fitness"] is None
    slope = next(c for c in data["checks"]["checks"] if c["name"] == "zero_slope_at_one")
    assert slope["passed"] is False and slope["counterexample"]["r"] == 1.0


def test_several_files_evaluate_as_one_batch_one_json_line_each(tmp_path):
    """Two files, one batch: one JSON object per line, in order, each naming its file; one
    verdict against a candidate makes the exit status 1. (The second is refused before the
    sandbox, so PPO trains alone from the compiled-program cache; a verdict from inside the
    sandbox is test_invalid_candidate_exits_1_with_counterexamples's.)"""
    honest = TASKS_DIR / "mirror_drift/baselines/ppo.py"
    broken = tmp_path / "broken.py"
    broken.write_text("import os\n\ndef drift(ratio, advantage):\n    return ratio * os.getpid()\n")
    result = run(str(honest), str(broken), "--budget", "smoke", "--sandbox", "process", "--json")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["file"] == str(honest) and first["status"] == "ok", first["stages"]
    assert isinstance(first["fitness"], float) and first["stages"][-1]["name"] == "score"
    assert second["file"] == str(broken) and second["status"] == "rejected"
    assert second["fitness"] is None and second["stages"][-1]["name"] == "static"
    assert "import of 'os'" in second["stages"][-1]["detail"]


def test_an_unreadable_file_among_several_is_a_usage_error(tmp_path):
    honest = TASKS_DIR / "mirror_drift/baselines/ppo.py"
    result = run(str(honest), str(tmp_path / "missing.py"), "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert "file not found" in result.stderr
