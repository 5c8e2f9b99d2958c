import json

import numpy as np
import pytest

from sandbox.budgets import BUDGETS, get_budget
from sandbox.fitness import (
    Aggregate,
    interquartile_mean,
    iqm_estimate,
    normalise,
    paired_difference,
    paired_lower_bound,
    too_few_for_interval,
)
from scientist.report.reproduction import REPRODUCTION


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


def test_iqm_interval_brackets_the_iqm_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(1)
    few, many = rng.normal(100, 10, size=8), rng.normal(100, 10, size=128)
    estimate = iqm_estimate([few])
    assert estimate.low <= interquartile_mean(few) <= estimate.high
    wide = iqm_estimate([many])
    assert wide.high - wide.low < estimate.high - estimate.low
    assert iqm_estimate([few]) == iqm_estimate([few])  # deterministic for a given seed
    same = iqm_estimate([[5.0] * 8])
    assert (same.low, same.high) == pytest.approx((5.0, 5.0))


def test_no_interval_below_the_seed_counts_whose_coverage_was_checked():
    """2 seeds: a percentile bootstrap returns about [min, max]; it is not an interval."""
    values = [0.9, 1.1]
    estimate = iqm_estimate([values])
    assert estimate.point == pytest.approx(1.0) and not estimate.has_interval
    assert estimate.describe(2) == "1.00 (2 seeds: too few for an interval)"
    assert not iqm_estimate([[1.0, 2.0, 3.0, 4.0]]).has_interval  # 4 values in all
    assert iqm_estimate([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]).has_interval
    assert not iqm_estimate([[1.0, 2.0, 3.0], [1.0] * 9]).has_interval  # 3 in one env
    agg = Aggregate.of([1.0, 2.0])
    assert agg.ci_low is None and agg.ci_high is None and agg.seeds == 2


def test_paired_difference_needs_paired_runs_and_sees_what_pairing_removes():
    rng = np.random.default_rng(2)
    luck = rng.normal(0, 1, size=16)  # shared by both drifts: the seed's luck
    a, b = 1.0 + luck + rng.normal(0, 0.05, 16), luck + rng.normal(0, 0.05, 16)
    paired = paired_difference([a], [b])
    assert paired.excludes_zero() and paired.low > 0.9
    unpaired = iqm_estimate([a])  # the same runs' own spread is far wider
    assert unpaired.high - unpaired.low > 4 * (paired.high - paired.low)
    with pytest.raises(ValueError, match="differ in seeds"):
        paired_difference([a], [b[:8]])


def _recorded() -> dict:
    """Per-seed normalised scores of PPO and DPO, 64 paired seeds on CartPole and Acrobot at the
    smoke budget (`python -m benchmarks.reproduce --budget smoke --seeds 64 --drifts ppo dpo
    --save scientist/report/reproduction/smoke.json`): real returns, with their skew and ties."""
    return json.loads(REPRODUCTION.joinpath("smoke.json").read_text())


def _coverage(populations, n, estimate, truth, repeats, seed=0):
    """How often the interval from n seeds per population, drawn with replacement, covers the
    populations' own statistic; None when no interval is given at that n."""
    rng = np.random.default_rng(seed)
    hits, shown = 0, 0
    for repeat in range(repeats):
        picks = [rng.integers(0, len(populations[0]), size=n) for _ in populations]
        result = estimate([p[i] for p, i in zip(populations, picks)], repeat)
        if result.has_interval:
            shown += 1
            hits += result.low <= truth <= result.high
    assert shown in (0, repeats)  # shown or not is a matter of n alone
    return hits / shown if shown else None


COVERAGE_REPEATS = 300


@pytest.mark.parametrize("envs", [("CartPole-v1",), ("CartPole-v1", "Acrobot-v1")])
def test_iqm_interval_covers_at_nominal_rate_where_it_is_shown(envs):
    """Nominal 95 % covers at least 90 % of the time at every n where an interval is shown
    (n = 2, 4, 8, 16 seeds per environment), on draws from recorded per-seed scores; the
    truth is the IQM over all 64 recorded seeds (mean over environments)."""
    recorded = _recorded()["scores"]
    for drift in ("ppo", "dpo"):
        populations = [np.asarray(recorded[drift][e]) for e in envs]
        truth = float(np.mean([interquartile_mean(p) for p in populations]))
        shown = []
        for n in (2, 4, 8, 16):
            rate = _coverage(
                populations,
                n,
                lambda s, r: iqm_estimate(s, seed=r, resamples=2000),
                truth,
                COVERAGE_REPEATS,
            )
            if rate is not None:
                shown.append(n)
                assert rate >= 0.90, f"{drift} {envs} n={n}: covered {rate:.0%}"
        assert 2 not in shown and 8 in shown and 16 in shown


@pytest.mark.parametrize("envs", [("CartPole-v1",), ("CartPole-v1", "Acrobot-v1")])
def test_paired_difference_interval_covers_at_nominal_rate_where_it_is_shown(envs):
    """The same for the paired difference DPO - PPO: draws pick seed indices, so each drawn
    pair keeps the two drifts' shared luck, as pairing on the same seeds does."""
    recorded = _recorded()["scores"]
    a = [np.asarray(recorded["dpo"][e]) for e in envs]
    b = [np.asarray(recorded["ppo"][e]) for e in envs]
    truth = float(np.mean([(x - y).mean() for x, y in zip(a, b)]))
    rng = np.random.default_rng(3)
    for n in (2, 4, 8, 16):
        hits, shown = 0, 0
        for repeat in range(COVERAGE_REPEATS):
            picks = [rng.integers(0, x.size, size=n) for x in a]
            result = paired_difference(
                [x[i] for x, i in zip(a, picks)],
                [y[i] for y, i in zip(b, picks)],
                seed=repeat,
                resamples=2000,
            )
            shown += result.has_interval
            hits += result.has_interval and result.low <= truth <= result.high
        if n == 2:
            assert shown == 0
        if shown:
            assert hits / shown >= 0.90, f"{envs} n={n}: covered {hits / shown:.0%}"


@pytest.mark.parametrize("envs", [("CartPole-v1",), ("CartPole-v1", "Acrobot-v1")])
def test_paired_lower_bound_errs_at_most_at_its_rate_where_it_is_given(envs):
    """The campaign-wide label bound (Student's t, Welch degrees of freedom) on recorded
    DPO - PPO seeds: at one-sided errors 2.5 % and 0.25 % (a campaign of 10 re-evaluated
    candidates) it lies above the truth no more often than that, with room for the draws."""
    recorded = _recorded()["scores"]
    a = [np.asarray(recorded["dpo"][e]) for e in envs]
    b = [np.asarray(recorded["ppo"][e]) for e in envs]
    truth = float(np.mean([(x - y).mean() for x, y in zip(a, b)]))
    rng = np.random.default_rng(5)
    for n in (2, 4, 8, 16):
        for error, allowed in ((0.025, 0.06), (0.0025, 0.02)):
            above, given = 0, 0
            for _ in range(COVERAGE_REPEATS):
                picks = [rng.integers(0, x.size, size=n) for x in a]
                bound = paired_lower_bound(
                    [x[i] for x, i in zip(a, picks)], [y[i] for y, i in zip(b, picks)], error
                )
                given += bound is not None
                above += bound is not None and bound > truth
            assert (given == 0) == too_few_for_interval([n] * len(envs))
            if given:
                assert above / given <= allowed, f"{envs} n={n} error={error}: {above / given:.1%}"


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
            config = budget.config(entry.env_id)
            assert config.total_timesteps == entry.timesteps
            assert all(getattr(config, name) == value for name, value in entry.overrides)
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
