"""`scientist train` end to end, as a user runs it (subprocess, real training)."""

import json
import os
import subprocess
import sys

SCIENTIST = [sys.executable, "-m", "scientist.cli"]


def run(*args, timeout=300):
    env = {**os.environ, "COLUMNS": "400"}  # keep rich from wrapping error messages
    return subprocess.run(
        [*SCIENTIST, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_train_json_reports_per_seed_returns_and_timings():
    result = run(
        "train",
        "--baseline",
        "dpo",
        "--env",
        "CartPole-v1",
        "--seeds",
        "3",
        "--timesteps",
        "20000",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in (
        "env",
        "seeds",
        "timesteps",
        "final_returns",
        "iqm",
        "ci_low",
        "ci_high",
        "compile_seconds",
        "train_seconds",
        "env_steps_per_second",
        "learning_curve",
    ):
        assert key in data, key
    assert data["env"] == "CartPole-v1" and data["seeds"] == 3 and data["drift"] == "dpo"
    assert len(data["final_returns"]) == 3
    # 3 seeds: too few for an interval of checked coverage (sandbox/fitness.py)
    assert data["ci_low"] is None and data["ci_high"] is None and data["iqm"] is not None
    assert data["timesteps"] <= 20000 and data["env_steps_per_second"] > 0
    assert data["normalised"] is None  # no budget given, so no reference to normalise by


def test_train_with_budget_and_candidate_file(tmp_path):
    candidate = tmp_path / "kl_like.py"
    candidate.write_text(
        "import jax.numpy as jnp\n\n"
        "def drift(ratio, advantage):\n"
        "    return 0.5 * (ratio - 1.0 - jnp.log(ratio))\n"
    )
    result = run(
        "train", "--candidate", str(candidate), "--budget", "smoke", "--env", "Acrobot-v1", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["budget"] == "smoke" and data["seeds"] == 2
    assert data["normalised"] is not None and len(data["normalised"]["scores"]) == 2


def test_contract_breaking_candidate_fails_cleanly(tmp_path):
    candidate = tmp_path / "reduced.py"
    candidate.write_text(
        "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n    return jnp.mean(ratio)\n"
    )
    result = run(
        "train", "--candidate", str(candidate), "--seeds", "1", "--timesteps", "1024", "--json"
    )
    assert result.returncode == 1
    assert "elementwise" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_exit_2():
    assert run("train", "--baseline", "ppo", "--candidate", "x.py").returncode == 2
    unknown_env = run("train", "--env", "Pong-v0", "--timesteps", "1000")
    assert unknown_env.returncode == 2 and "unknown environment" in unknown_env.stderr
    assert run("train", "--baseline", "trpo").returncode == 2
    assert run("train", "--candidate", "/nonexistent/drift.py").returncode == 2


def test_cli_sets_xla_flags_before_jax_is_imported():
    """Without the flag, vmapped CPU training can deadlock on small hosts (seen here)."""
    code = "import scientist.cli, os, jax; print(os.environ['XLA_FLAGS'])"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "xla_cpu_enable_concurrency_optimized_scheduler=false" in result.stdout
