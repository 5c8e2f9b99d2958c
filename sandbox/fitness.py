"""Turning per-seed returns into fitness: normalisation, interquartile mean, intervals.

IQM and stratified bootstrap intervals over seeds follow the "Deep RL at the edge of the
statistical precipice" recommendations (Agarwal et al., 2021), with two small-sample
safeguards: the percentile interval is expanded, and no interval is given below the seed
counts at which its coverage was checked. Paired differences compare runs trained on the
same seeds (common random numbers), which removes most of the seed-to-seed luck.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special  # not scipy.stats: half a second to import, in every sandbox


def _iqm_weights(n: int) -> np.ndarray:
    """Weight of each sorted sample: its overlap with the quantile interval [n/4, 3n/4]."""
    edges = np.arange(n + 1, dtype=np.float64)
    weights = np.clip(np.minimum(edges[1:], 0.75 * n) - np.maximum(edges[:-1], 0.25 * n), 0.0, None)
    return weights / weights.sum()


def interquartile_mean(values, axis: int = -1):
    """Mean of the middle 50% of values along `axis` (trimming 25% from each end, fractionally)."""
    x = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    if x.shape[axis] == 0:
        raise ValueError("interquartile mean of no values")
    result = np.tensordot(np.moveaxis(x, axis, -1), _iqm_weights(x.shape[axis]), axes=1)
    return float(result) if result.ndim == 0 else result


# Intervals are shown only where their coverage was checked (tests/test_fitness_coverage.py:
# draws from recorded per-seed scores): every environment needs this many seeds, and the
# interval this many values in all. Below, a percentile bootstrap can only return about the
# sample's range, which covered the truth half the time at 2 seeds while labelled 95 %.
MIN_SEEDS_PER_ENV = 4
MIN_VALUES = 8
CONFIDENCE = 0.95
RESAMPLES = 5000


def too_few_for_interval(counts: Sequence[int]) -> bool:
    """Seeds per environment (stratum) too few for an interval of checked coverage."""
    return not counts or min(counts) < MIN_SEEDS_PER_ENV or sum(counts) < MIN_VALUES


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its interval; `low`/`high` are None where there are too few seeds
    (`seeds`: the fewest any environment has) for an interval of checked coverage."""

    point: float
    low: float | None
    high: float | None
    seeds: int
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def excludes_zero(self) -> bool:
        return self.has_interval and (self.low > 0.0 or self.high < 0.0)

    def interval_text(self, digits: int = 3) -> str:
        """`[low, high]`, or why there is none."""
        if not self.has_interval:
            return f"({seed_count(self.seeds)}: too few for an interval)"
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def describe(self, digits: int = 3) -> str:
        return f"{self.point:.{digits}f} {self.interval_text(digits)}"

    @classmethod
    def of_entry(cls, normalised: dict) -> "Estimate":
        """From a scorer's per-environment `normalised` entry (scores, iqm, ci_low, ci_high);
        an interval stored by an older version at too few seeds is not shown."""
        seeds = len(normalised.get("scores") or ())
        low, high = normalised.get("ci_low"), normalised.get("ci_high")
        if too_few_for_interval([seeds]):
            low = high = None
        return cls(float(normalised.get("iqm", float("nan"))), low, high, seeds)


def seed_count(seeds: int) -> str:
    return f"{seeds} seed" + ("" if seeds == 1 else "s")


def stratified_bootstrap(
    strata: Sequence, statistic, *, confidence=CONFIDENCE, resamples=RESAMPLES, seed=0
) -> Estimate:
    """Mean over strata (environments) of `statistic` (rows -> one value per row) of each
    stratum's values, with a stratified bootstrap interval: values resampled within each
    stratum, as rliable does. The percentile interval is expanded for small samples
    (Hesterberg 2015: the tail probability of a t with n - 1 degrees of freedom, scaled by
    sqrt(n / (n - 1))), since a plain percentile bootstrap is too narrow at small n."""
    samples = [np.asarray(s, dtype=np.float64).ravel() for s in strata]
    counts = [s.size for s in samples]
    if not samples or min(counts) == 0:
        raise ValueError("an estimate needs at least one value in every environment")
    point = float(np.mean([statistic(s[None])[0] for s in samples]))
    seeds = min(counts)
    if too_few_for_interval(counts):
        return Estimate(point, None, None, seeds, confidence)
    rng = np.random.default_rng(seed)
    resampled = np.mean(
        [statistic(s[rng.integers(0, s.size, size=(resamples, s.size))]) for s in samples], axis=0
    )
    tail = _expanded_tail((1.0 - confidence) / 2.0, seeds)
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return Estimate(point, float(low), float(high), seeds, confidence)


def _expanded_tail(tail: float, n: int) -> float:
    z = math.sqrt(n / (n - 1)) * float(special.stdtrit(n - 1, 1.0 - tail))  # t quantile
    return float(special.ndtr(-z))  # normal upper tail


def _iqm_rows(rows: np.ndarray) -> np.ndarray:
    return np.atleast_1d(interquartile_mean(rows, axis=1))


def _mean_rows(rows: np.ndarray) -> np.ndarray:
    return rows.mean(axis=1)


def iqm_estimate(strata: Sequence, **options) -> Estimate:
    """Mean over environments of the IQM over seeds (the fitness), with its interval."""
    return stratified_bootstrap(strata, _iqm_rows, **options)


def paired_difference(strata_a: Sequence, strata_b: Sequence, **options) -> Estimate:
    """Mean over environments of the mean per-seed difference a - b, for runs paired on the
    same seeds (seed i of a and of b trained from the same keys), with its interval."""
    differences = []
    for a, b in zip(strata_a, strata_b, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"paired runs differ in seeds: {a.size} against {b.size}")
        differences.append(a - b)
    return stratified_bootstrap(differences, _mean_rows, **options)


def paired_lower_bound(strata_a: Sequence, strata_b: Sequence, error: float) -> float | None:
    """A one-sided lower confidence bound, erring with probability `error`, on the mean over
    environments of the mean per-seed difference a - b (paired runs): Student's t with
    Welch-Satterthwaite degrees of freedom over the strata. Unlike the percentile bootstrap
    it holds at the small errors a campaign-wide correction asks for, where a bootstrap of 8
    values runs out of distinct resamples. None below the seeds of checked coverage."""
    differences = [
        np.asarray(a, dtype=np.float64).ravel() - np.asarray(b, dtype=np.float64).ravel()
        for a, b in zip(strata_a, strata_b, strict=True)
    ]
    counts = [d.size for d in differences]
    if too_few_for_interval(counts):
        return None
    k = len(differences)
    parts = np.array([d.var(ddof=1) / d.size for d in differences]) / k**2
    se = math.sqrt(parts.sum())
    point = float(np.mean([d.mean() for d in differences]))
    if se == 0.0:
        return point
    df = parts.sum() ** 2 / sum(p * p / (n - 1) for p, n in zip(parts, counts) if p > 0)
    return point - float(special.stdtrit(df, 1.0 - error)) * se  # t quantile


def split_estimate(envs: dict) -> Estimate | None:
    """A split's fitness (meta-train or meta-test) from the scorer's per-environment entries
    (env -> {"normalised": {"scores": [...]}}): the mean over environments of the IQM over
    seeds, with its stratified interval; None for a split with no environments."""
    strata = [entry["normalised"]["scores"] for entry in envs.values()]
    return iqm_estimate(strata) if strata else None


def normalise(returns, *, random_return: float, ppo_return: float):
    """Score where 0 is the random policy and 1 is the PPO reference at the same budget.

    For environments whose random return is 0 this is return / PPO return; the offset keeps
    negative-reward tasks such as Acrobot meaningful (a random policy must not score 6x PPO).
    """
    span = ppo_return - random_return
    if span <= 0:
        raise ValueError(f"PPO reference {ppo_return} does not beat random {random_return}")
    return (np.asarray(returns, dtype=np.float64) - random_return) / span


@dataclass(frozen=True)
class Aggregate:
    """One environment's values over seeds: IQM with its interval (None where too few seeds),
    mean and median."""

    iqm: float
    ci_low: float | None
    ci_high: float | None
    mean: float
    median: float
    seeds: int

    @classmethod
    def of(cls, values, **options) -> "Aggregate":
        x = np.asarray(values, dtype=np.float64).ravel()
        estimate = iqm_estimate([x], **options)
        return cls(
            estimate.point,
            estimate.low,
            estimate.high,
            float(x.mean()),
            float(np.median(x)),
            x.size,
        )

    @property
    def estimate(self) -> Estimate:
        return Estimate(self.iqm, self.ci_low, self.ci_high, self.seeds)
