"""The Mirror Learning drift conditions, checked numerically with counterexamples.

For all ratios r > 0 and advantages A a valid drift is finite, non-negative, exactly 0 at
r = 1, and has zero slope in r at r = 1. Everything here runs in float64 so that rounding
in valid drifts (e.g. r - 1 - log r near r = 1) is not mistaken for a violation.

The slope condition uses autodiff *and* one-sided finite differences on both sides of 1:
autodiff reports 0 at the kink of abs or relu, which is wrong. A kink shows as a one-sided
difference quotient that stays put as the step shrinks; for a smooth drift with zero slope
it shrinks with the step.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sandbox.checks.contract import describe_failure
from sandbox.checks.report import CheckResult

R_MIN, R_MAX = 1e-3, 1e3
A_MAX = 10.0


@dataclass(frozen=True)
class Tolerances:
    """Absolute tolerances, each scaled by (1 + |A|) since drifts scale with the advantage."""

    value: float = 1e-6  # how negative a value may be, and how far from 0 at r = 1
    slope: float = 1e-4  # the largest |slope| at r = 1 accepted without further evidence
    kink_ratio: float = 0.5  # a one-sided quotient that keeps this share over 2 decades is a kink


SLOPE_STEPS = np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])


def _grid():
    r = np.unique(np.concatenate([
        np.geomspace(R_MIN, R_MAX, 601),
        1.0 + np.array([-0.5, -0.3, -0.2, -0.1, -0.05, -0.01, -1e-3, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5]),
    ]))
    a = np.unique(np.concatenate([np.linspace(-A_MAX, A_MAX, 81), [-1e-2, -1e-3, 0.0, 1e-3, 1e-2]]))
    return r, a


def _random_points(n: int = 20_000, seed: int = 0, a_max: float = A_MAX):
    """Log-uniform ratios and uniform advantages, plus a cluster of typical training values."""
    rng = np.random.default_rng(seed)
    r = np.exp(rng.uniform(np.log(R_MIN), np.log(R_MAX), n))
    near_one = np.exp(rng.normal(0.0, 0.1, n // 4))
    a = np.concatenate([rng.uniform(-a_max, a_max, n), rng.normal(0.0, 1.0, n // 4)])
    return np.concatenate([r, near_one]), a


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def check_drift(drift, filename: str = "candidate.py", tol: Tolerances = Tolerances()) -> list[CheckResult]:
    """The four drift conditions; each result carries a counterexample when it fails."""
    with jax.enable_x64(True):
        try:
            return [
                _check_finite(drift, tol),
                _check_non_negative(drift, tol),
                _check_zero_at_one(drift, tol),
                _check_zero_slope(drift, tol),
            ]
        except Exception as error:  # the candidate crashed on concrete inputs
            detail = describe_failure(error, filename)
            return [CheckResult(n, False, detail) for n in ("finite", "non_negative", "zero_at_one", "zero_slope_at_one")]


def _evaluate(drift, r, a):
    return np.asarray(jax.jit(drift)(jnp.asarray(r, jnp.float64), jnp.asarray(a, jnp.float64)), np.float64)


def _slope_autodiff(drift, r, a):
    def one(ri, ai):
        return jax.grad(lambda x: drift(x[None], ai[None])[0])(ri)

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(r, jnp.float64), jnp.asarray(a, jnp.float64)))


# Where a float64 overflow cannot be the excuse: values and slopes must be finite here.
# Outside it (e.g. exp(r - 1) at r = 800) +inf is the arithmetic's limit, not the drift's;
# NaN and -inf are refused everywhere.
ORDINARY_R = (0.1, 10.0)


def _ordinary(r, a):
    return (r >= ORDINARY_R[0]) & (r <= ORDINARY_R[1]) & (np.abs(a) <= A_MAX)


def _non_finite(values, r, a):
    """Values that break finiteness: NaN or -inf anywhere, +inf at ordinary points."""
    return np.isnan(values) | np.isneginf(values) | (np.isposinf(values) & _ordinary(r, a))


def _check_finite(drift, tol):
    r_grid, a_grid = _grid()
    R, A = (x.ravel() for x in np.meshgrid(r_grid, a_grid, indexing="ij"))
    r_rand, a_rand = _random_points()
    r, a = np.concatenate([R, r_rand]), np.concatenate([A, a_rand])
    values = _evaluate(drift, r, a)
    bad = _non_finite(values, r, a)
    if bad.any():
        i = int(np.argmax(bad))
        return CheckResult(
            "finite", False,
            f"drift(r={_fmt(r[i])}, A={_fmt(a[i])}) = {values[i]}; a drift must be finite for every "
            f"ratio > 0 and advantage ({bad.mean():.1%} of the points checked are not)",
            {"r": float(r[i]), "A": float(a[i]), "value": str(values[i])},
        )
    r_slope = r_grid.repeat(9)
    a_slope = np.tile(np.linspace(-A_MAX, A_MAX, 9), r_grid.size)
    slopes = _slope_autodiff(drift, r_slope, a_slope)
    bad = np.isnan(slopes) | (np.isinf(slopes) & _ordinary(r_slope, a_slope))  # slopes may be -inf far out
    if bad.any():
        i = int(np.argmax(bad))
        return CheckResult(
            "finite", False,
            f"the gradient of the drift in r at r={_fmt(r_slope[i])}, A={_fmt(a_slope[i])} is {slopes[i]}; training "
            "would propagate it into the policy (e.g. jnp.where with a NaN branch, sqrt at 0)",
            {"r": float(r_slope[i]), "A": float(a_slope[i]), "gradient": str(slopes[i])},
        )
    return CheckResult(
        "finite", True,
        f"no NaN or -inf at {r.size} points, r in [{R_MIN:g}, {R_MAX:g}], |A| <= {A_MAX:g}; values and "
        f"gradients finite for r in [{ORDINARY_R[0]:g}, {ORDINARY_R[1]:g}]",
    )


def _check_non_negative(drift, tol):
    r_grid, a_grid = _grid()
    R, A = (x.ravel() for x in np.meshgrid(r_grid, a_grid, indexing="ij"))
    # Non-negativity must hold for every advantage; look beyond the grid's range as well.
    r_rand, a_rand = _random_points(seed=1, a_max=5 * A_MAX)
    r_adv, a_adv = _adversarial_minimum(drift, np.concatenate([R, r_rand]), np.concatenate([A, a_rand]))
    r = np.concatenate([R, r_rand, r_adv])
    a = np.concatenate([A, a_rand, a_adv])
    values = _evaluate(drift, r, a)
    margin = values + tol.value * (1.0 + np.abs(a))
    margin = np.where(np.isfinite(margin), margin, np.inf)  # non-finite values are the finite check's job
    violating = np.flatnonzero(margin < 0)
    if violating.size:
        # Show the violation nearest typical training values (r near 1, small |A|); it is the
        # most useful to whoever repairs the drift. Mention the worst one too.
        i = violating[np.argmin(np.abs(np.log(r[violating])) + np.abs(a[violating]) / A_MAX)]
        w = violating[np.argmin(values[violating])]
        worst = "" if w == i else f" (the most negative found: drift(r={_fmt(r[w])}, A={_fmt(a[w])}) = {_fmt(values[w])})"
        return CheckResult(
            "non_negative", False,
            f"drift(r={_fmt(r[i])}, A={_fmt(a[i])}) = {_fmt(values[i])} < 0; a drift must be non-negative "
            f"for every ratio and advantage{worst}",
            {"r": float(r[i]), "A": float(a[i]), "value": float(values[i])},
        )
    return CheckResult(
        "non_negative", True,
        f"minimum {_fmt(values[np.isfinite(values)].min())} over a grid, random points and a gradient search for negative values",
    )


def _adversarial_minimum(drift, r_start, a_start, starts: int = 256, steps: int = 150):
    """Gradient descent on the drift value over (log r, A) in the checked box, started from
    the lowest points found so far and from random points."""
    values = _evaluate(drift, r_start, a_start)
    order = np.argsort(np.where(np.isfinite(values), values, np.inf))[: starts // 2]
    rng = np.random.default_rng(2)
    u0 = np.concatenate([np.log(r_start[order]), rng.uniform(np.log(R_MIN), np.log(R_MAX), starts // 2)])
    a0 = np.concatenate([a_start[order], rng.uniform(-A_MAX, A_MAX, starts // 2)])
    bounds_low = jnp.array([np.log(R_MIN), -A_MAX])
    bounds_high = jnp.array([np.log(R_MAX), A_MAX])
    optimizer = optax.adam(0.05)

    def value(x):
        return drift(jnp.exp(x[0])[None], x[1][None])[0]

    def descend(x):
        def step(carry, _):
            x, state = carry
            g = jax.grad(value)(x)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            updates, state = optimizer.update(g, state)
            x = jnp.clip(x + updates, bounds_low, bounds_high)
            return (x, state), None

        (x, _), _ = jax.lax.scan(step, (x, optimizer.init(x)), None, steps)
        return x

    x = jax.jit(jax.vmap(descend))(jnp.stack([jnp.asarray(u0), jnp.asarray(a0)], axis=1))
    x = np.asarray(x)
    return np.exp(x[:, 0]), x[:, 1]


def _check_zero_at_one(drift, tol):
    _, a_grid = _grid()
    a = np.concatenate([a_grid, _random_points(2000, seed=3)[1]])
    values = _evaluate(drift, np.ones_like(a), a)
    excess = np.abs(values) - tol.value * (1.0 + np.abs(a))
    excess = np.where(np.isfinite(excess), excess, np.inf)
    i = int(np.argmax(excess))
    if excess[i] > 0:
        return CheckResult(
            "zero_at_one", False,
            f"drift(r=1, A={_fmt(a[i])}) = {_fmt(values[i])}; a drift must be exactly 0 when the policy "
            "has not changed (r = 1)",
            {"r": 1.0, "A": float(a[i]), "value": float(values[i]) if np.isfinite(values[i]) else str(values[i])},
        )
    return CheckResult("zero_at_one", True, f"|drift(1, A)| <= {tol.value:g}·(1+|A|) for {a.size} advantages")


def _check_zero_slope(drift, tol):
    a = np.unique(np.concatenate([np.linspace(-A_MAX, A_MAX, 41), [-0.5, -0.1, -1e-2, 1e-2, 0.1, 0.5]]))
    h = SLOPE_STEPS
    f1 = _evaluate(drift, np.ones_like(a), a)
    right = (_evaluate(drift, (1.0 + h[:, None]) * np.ones_like(a), np.broadcast_to(a, (h.size, a.size)).copy()) - f1) / h[:, None]
    left = (f1 - _evaluate(drift, (1.0 - h[:, None]) * np.ones_like(a), np.broadcast_to(a, (h.size, a.size)).copy())) / h[:, None]
    autodiff = _slope_autodiff(drift, np.ones_like(a), a)
    allowed = tol.slope * (1.0 + np.abs(a))

    def kinked(quotients):
        smallest, two_decades_up = np.abs(quotients[-1]), np.abs(quotients[-3])
        return ~np.isfinite(smallest) | ((smallest > allowed) & (smallest > tol.kink_ratio * two_decades_up))

    bad_autodiff = ~np.isfinite(autodiff) | (np.abs(autodiff) > allowed)
    bad = bad_autodiff | kinked(right) | kinked(left)
    if bad.any():
        # Report the advantage with the largest one-sided slope.
        worst = np.where(bad, np.nan_to_num(np.maximum(np.abs(right[-1]), np.abs(left[-1])), nan=np.inf), -1.0)
        i = int(np.argmax(worst))
        example = {
            "r": 1.0, "A": float(a[i]), "autodiff_slope": float(autodiff[i]),
            "left_slope": float(left[-1, i]), "right_slope": float(right[-1, i]), "step": float(h[-1]),
        }
        if bad_autodiff[i]:
            what = f"its derivative in r at r=1, A={_fmt(a[i])} is {_fmt(autodiff[i])}"
        else:
            what = (
                f"it has a kink at r=1 for A={_fmt(a[i])}: slope {_fmt(left[-1, i])} from the left and "
                f"{_fmt(right[-1, i])} from the right (over steps of {h[-1]:g}), not shrinking towards 0"
            )
        return CheckResult(
            "zero_slope_at_one", False,
            f"a drift must have zero slope in r at r = 1, but {what}", example,
        )
    return CheckResult(
        "zero_slope_at_one", True,
        f"autodiff and one-sided finite differences (steps {h[0]:g} to {h[-1]:g}) vanish at r = 1 for {a.size} advantages",
    )
