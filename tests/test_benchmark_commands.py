"""Benchmarks run as users run them, at their tiny sizes: each ends with one JSON line of its
headline figures. The GPU check runs here on the CPU (`--tiny`); on a lent GPU the same
command without the flag is the device check (no GPU is needed for this test)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def last_json(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=540
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gpu_check_runs_tiny_on_a_cpu_and_reports_its_figures():
    figures = last_json("benchmarks.gpu", "--tiny")
    assert set(figures["steps_per_second"]) == {"1", "4"}
    assert all(rate > 0 for rate in figures["steps_per_second"].values())
    assert figures["paper_candidates_per_hour_one"] > 0
    assert figures["paper_candidates_per_hour_batched"] > 0
    assert figures["peak_memory_bytes"] is None or figures["peak_memory_bytes"] > 0


def test_settings_grid_scores_each_setting_on_the_four_criteria(tmp_path):
    figures = last_json(
        "benchmarks.settings",
        *("--envs", "CartPole-v1", "--steps", "4096", "--epochs", "2", "--lrs", "0.01"),
        *("--seeds", "2", "--gp", "1", "--reference-file", str(tmp_path / "none.json")),
    )
    assert figures["settings"] == 1 and figures["drifts"] == 4  # PPO, DPO, zero, one GP
    (row,) = figures["rows"]
    assert set(row["criteria"]) == {
        "zero_at_most_half",
        "ppo_below_ceiling",
        "screen_within_2s",
        "ranks_agree",
    }
    assert row["criteria"]["ranks_agree"] is None  # no reference run: said, not guessed
    assert row["normalised"]["ppo"] == 1.0 and row["screen_seconds"] > 0


def test_campaign_benchmark_headline_takes_the_best_screening_rate():
    from benchmarks.campaign import headline

    rows = [
        {"kind": "GP", "fidelity": "screen", "per_hour": 500.0, "training": 0.4},
        {"kind": "GP", "fidelity": "screen", "per_hour": 700.0, "training": 0.5},
        {"kind": "GP", "fidelity": "full", "per_hour": 300.0, "training": 0.6},
        {"kind": "LLM code", "fidelity": "screen", "per_hour": 200.0, "training": 0.3},
    ]
    figures = headline(rows, "discovery")
    assert figures["gp_screened_per_hour"] == 700.0 and figures["training_share"] == 0.5
    assert figures["llm_screened_per_hour"] == 200.0 and figures["llm_full_per_hour"] is None
    assert figures["gp_full_per_hour"] == 300.0
