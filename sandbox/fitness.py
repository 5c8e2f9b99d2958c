"""Turning per-seed returns into fitness: normalisation, interquartile mean, bootstrap CIs.

IQM and percentile-bootstrap CIs over seeds follow the "Deep RL at the edge of the
statistical precipice" recommendations (Agarwal et al., 2021).
"""

from dataclasses import dataclass

import numpy as np


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


def bootstrap_ci(values, *, confidence=0.95, resamples=2000, seed=0):
    """Percentile bootstrap confidence interval of the IQM over the seeds in `values`."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    stats = interquartile_mean(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


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
    iqm: float
    ci_low: float
    ci_high: float
    mean: float
    median: float

    @classmethod
    def of(cls, values, **bootstrap_kwargs) -> "Aggregate":
        x = np.asarray(values, dtype=np.float64).ravel()
        low, high = bootstrap_ci(x, **bootstrap_kwargs)
        return cls(interquartile_mean(x), low, high, float(x.mean()), float(np.median(x)))
