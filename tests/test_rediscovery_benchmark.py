"""The rediscovery benchmark as users run it, at its tiny size (its own module: the longest
of the benchmark commands, so the two test workers can share them out)."""

import pytest
from test_benchmark_commands import last_json

pytestmark = pytest.mark.slow


def test_rediscovery_runs_its_arms_tiny_and_reports_each(tmp_path):
    """A campaign arm and the ES arm run for real (tiny: seconds of search), each winner is
    trained again on fresh paired seeds with PPO; the JSON names every arm run. The smoke
    budget, whose compiled programs the rest of the suite shares: the path does not depend
    on the budget, and the discovery budget's settings are scored in test_benchmark_commands.
    (The best-of-N arm is the same campaign with selection "none", whose parent choice
    tests/test_reevaluation.py checks.)"""
    picture = tmp_path / "timeline.png"
    figures = last_json(
        "benchmarks.rediscovery",
        "--tiny",
        "--budget",
        "smoke",
        "--arms",
        "gp_evolution",
        "es",
        "--db",
        f"sqlite:///{tmp_path}/a.db",
        "--figure",
        str(picture),
    )
    assert set(figures["arms"]) == {"gp_evolution", "es"}
    assert picture.read_bytes().startswith(b"\x89PNG")
    for name, arm in figures["arms"].items():
        assert set(arm) >= {"reached_ppo_seconds", "quick_score", "fresh", "seconds"}, name
        assert arm["seconds"] > 0 and arm["quick_score"] is None  # --tiny skips the quick budget
        reached = arm["reached_ppo_seconds"]
        assert reached is None or 0 < reached <= arm["seconds"] + 1, name
    evolved = figures["arms"]["gp_evolution"]
    assert evolved["candidates"] > 0 and "difference" in evolved["fresh"]
