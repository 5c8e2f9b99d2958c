import numpy as np
import pytest

from sandbox.budgets import BUDGETS, get_budget
from sandbox.fitness import Aggregate, bootstrap_ci, interquartile_mean, normalise


def test_interquartile_mean_trims_a_quarter_from_each_end():
    assert interquartile_mean([1, 2, 3, 4]) == pytest.approx(2.5)
    assert interquartile_mean([1, 2, 3, 4, 5]) == pytest.approx(
        3.0
    )  # weights 0.75, 1, 0.75 on 2, 3, 4
    assert interquartile_mean([-1000, 3, 10, 10, 10, 10, 17, 1000]) == pytest.approx(
        10.0
    )  # outliers ignored
    assert interquartile_mean([7.0]) == 7.0


def test_interquartile_mean_along_axis_matches_row_by_row():
    rows = np.random.default_rng(0).normal(size=(5, 9))
    np.testing.assert_allclose(
        interquartile_mean(rows, axis=1), [interquartile_mean(r) for r in rows]
    )


def test_bootstrap_ci_brackets_the_iqm_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(1)
    few, many = rng.normal(100, 10, size=8), rng.normal(100, 10, size=128)
    low, high = bootstrap_ci(few)
    assert low <= interquartile_mean(few) <= high
    low_many, high_many = bootstrap_ci(many)
    assert high_many - low_many < high - low
    assert bootstrap_ci(few) == bootstrap_ci(few)  # deterministic for a given seed
    assert bootstrap_ci([5.0, 5.0, 5.0]) == pytest.approx((5.0, 5.0))


def test_aggregate_reports_all_statistics():
    agg = Aggregate.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert agg.median == 3.0 and agg.mean == pytest.approx(22.0) and agg.iqm == pytest.approx(3.0)
    assert agg.ci_low <= agg.iqm <= agg.ci_high


def test_normalise_maps_random_to_zero_and_ppo_to_one_even_for_negative_rewards():
    np.testing.assert_allclose(
        normalise([22.0, 500.0], random_return=22.0, ppo_return=500.0), [0.0, 1.0]
    )
    # Acrobot: -500 is the random policy, not a 6x-better-than-PPO score.
    np.testing.assert_allclose(
        normalise([-500.0, -85.0], random_return=-500.0, ppo_return=-85.0), [0.0, 1.0]
    )
    with pytest.raises(ValueError):
        normalise([1.0], random_return=5.0, ppo_return=5.0)


def test_budgets_are_complete_and_ordered_by_cost():
    for budget in BUDGETS.values():
        assert budget.seeds >= 1 and budget.envs
        for entry in budget.envs:
            assert entry.ppo_return > entry.random_return
            assert budget.config(entry.env_id).total_timesteps == entry.timesteps
    assert set(get_budget("smoke").env_ids) == {"CartPole-v1", "Acrobot-v1"}
    assert set(get_budget("paper").env_ids) >= {
        "Breakout-MinAtar",
        "Asterix-MinAtar",
        "Freeway-MinAtar",
        "SpaceInvaders-MinAtar",
    }
    steps = lambda name: sum(e.timesteps * BUDGETS[name].seeds for e in BUDGETS[name].envs)  # noqa: E731
    assert steps("smoke") < steps("quick") < steps("paper")
    with pytest.raises(KeyError, match="unknown budget"):
        get_budget("huge")
