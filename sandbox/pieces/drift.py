"""Mirror Learning drifts: `drift(ratio, advantage)`, elementwise, in the policy loss
-mean(r·A - drift(r, A)).

For all ratios r > 0 and advantages A a valid drift is finite, non-negative, exactly 0 at
r = 1, and has zero slope in r at r = 1. The conditions are defined once, on a `Probe`, with
one table of tolerances per precision, and evaluated three ways:
- thoroughly in the sandbox (`check_drift`: float64 JAX on a grid, random points and a
  gradient search for negative values);
- as the mutation proposer's pre-screen (`SCREEN`: numpy on expression trees, coarser points);
- on a landscape computed in the sandbox (`landscape_check`: float32 values on a fixed grid,
  for distillation).

The slope condition uses autodiff *and* one-sided finite differences on both sides of 1:
autodiff reports 0 at the kink of abs or relu, which is wrong. A kink shows as a one-sided
difference quotient that keeps its size as the step shrinks; for a smooth drift with zero
slope the quotient shrinks in proportion to the step.
"""

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sandbox.checks.report import CheckResult
from sandbox.pieces.base import (
    OTHER_SIZES,
    Condition,
    Contract,
    JaxProbe,
    Piece,
    Probe,
    Screen,
    first_failure,
    grid,
    unique,
)
from sandbox.training.components import PlugPoint

R_MIN, R_MAX = 1e-3, 1e3
A_MAX = 10.0
# Where a float64 overflow cannot be the excuse: values and slopes must be finite here.
# Outside it (e.g. exp(r - 1) at r = 800) +inf is the arithmetic's limit, not the drift's;
# NaN and -inf are refused everywhere.
ORDINARY_R = (0.1, 10.0)

FINITE = Condition("finite", "non-finite")
NON_NEGATIVE = Condition("non_negative", "negative")
ZERO_AT_ONE = Condition("zero_at_one", "nonzero at r=1")
ZERO_SLOPE = Condition("zero_slope_at_one", "slope at r=1")
CONDITIONS = (FINITE, NON_NEGATIVE, ZERO_AT_ONE, ZERO_SLOPE)
# Training follows the autodiff derivative in r, so the conditions on the values only count
# if it is the values' derivative (checks/gradient_path.py refuses the known ways to differ).
DERIVATIVE = Condition("derivative_of_values", "autodiff slope is not the values'")


@dataclass(frozen=True)
class Tolerances:
    """Absolute tolerances, each scaled by (1 + |A|) since drifts scale with the advantage."""

    value: float  # how negative a value may be, and how far from 0 at r = 1
    slope: float  # the largest autodiff |slope| at r = 1
    kink: float  # the largest one-sided difference quotient at r = 1 that may keep its size
    derivative: float  # autodiff against the values' derivative, also relative to its size


TOLERANCES = {
    "float64": Tolerances(value=1e-6, slope=1e-4, kink=1e-4, derivative=1e-6),
    # Autodiff is not noisy: the float32 slope at 1 may exceed float64's tolerance only by
    # float32 rounding of terms of order 1 (a few 1e-7). Difference quotients are: float32
    # resolves one at a step of 1e-6 to about 0.12 where terms of order 1 cancel
    # (exp(r - 1) - r), so the kink allowance sits above that; finer kinks in float32 are the
    # certificate's to find (it evaluates the float32 trace in float64). Float32 autodiff
    # agrees with float64's to ~1e-6 relative in honest drifts; 1e-3 leaves room for
    # cancellation.
    "float32": Tolerances(value=1e-4, slope=2e-4, kink=0.2, derivative=1e-3),
}
# What the certificate proves: bounds in real arithmetic (widened for float32 rounding) are
# not noisy, so its slope claim is tighter than the float32 quotients'.
CERTIFIED = Tolerances(value=1e-4, slope=1e-3, kink=1e-3, derivative=1e-3)


@dataclass(frozen=True)
class Points:
    """Where each condition looks: (ratio, advantage) arrays, or advantages at r = 1."""

    finite: tuple[np.ndarray, np.ndarray]
    slopes: tuple[
        np.ndarray, np.ndarray
    ]  # autodiff slopes must be finite here (at ordinary points)
    non_negative: tuple[np.ndarray, np.ndarray]
    at_one: np.ndarray
    flat: np.ndarray  # advantages where the slope at r = 1 must vanish
    right_steps: tuple[
        float, float
    ]  # (small, large) steps of one-sided quotients compared for a kink
    left_steps: tuple[float, float]


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _ordinary(r, a):
    return (r >= ORDINARY_R[0]) & (r <= ORDINARY_R[1]) & (np.abs(a) <= A_MAX)


# -- the conditions -------------------------------------------------------------------------------


def finite(probe: Probe, points: Points, tol: Tolerances, excused=None) -> CheckResult:
    """`excused(r, a, derivative)`, if given, marks points where an infinite value (or slope)
    is the precision's range and not the drift's doing (the float32 pass: where the float64
    number is beyond float32's range)."""

    def unexcused(mask, r, a, derivative):
        if excused is not None and mask.any():
            mask[mask] = ~excused(r[mask], a[mask], derivative)
        return mask

    r, a = points.finite
    values = probe.values(r, a)
    overflow = unexcused(np.isposinf(values) & _ordinary(r, a), r, a, False)
    bad = np.isnan(values) | np.isneginf(values) | overflow
    if bad.any():
        i = int(np.argmax(bad))
        return CheckResult(
            FINITE.name,
            False,
            f"drift(r={_fmt(r[i])}, A={_fmt(a[i])}) = {values[i]}; a drift must be finite "
            f"for every ratio > 0 and advantage ({bad.mean():.1%} of the points checked are not)",
            {"r": float(r[i]), "A": float(a[i]), "value": str(values[i])},
        )
    r_slope, a_slope = points.slopes
    slopes = probe.slope(r_slope, a_slope)
    infinite = np.isinf(slopes) & _ordinary(r_slope, a_slope)  # slopes may be -inf far out
    bad = np.isnan(slopes) | unexcused(infinite, r_slope, a_slope, True)
    if bad.any():
        i = int(np.argmax(bad))
        return CheckResult(
            FINITE.name,
            False,
            f"the gradient of the drift in r at r={_fmt(r_slope[i])}, A={_fmt(a_slope[i])} "
            f"is {slopes[i]}; training "
            "would propagate it into the policy (e.g. jnp.where with a NaN branch, sqrt at 0)",
            {"r": float(r_slope[i]), "A": float(a_slope[i]), "gradient": str(slopes[i])},
        )
    return CheckResult(
        FINITE.name,
        True,
        f"no NaN or -inf at {r.size} points, r in [{r.min():g}, {r.max():g}], "
        f"|A| <= {np.abs(a).max():g}; values and "
        f"gradients finite for r in [{ORDINARY_R[0]:g}, {ORDINARY_R[1]:g}]",
    )


def non_negative(
    probe: Probe,
    points: Points,
    tol: Tolerances,
    search: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple] | None = None,
) -> CheckResult:
    """`search(r, a, values)`, if given, returns more (r, a) points where the drift may be lower."""
    r, a = points.non_negative
    values = probe.values(r, a)
    if search is not None:
        r_more, a_more = search(r, a, values)
        r, a = np.concatenate([r, r_more]), np.concatenate([a, a_more])
        values = np.concatenate([values, probe.values(r_more, a_more)])
    margin = values + tol.value * (1.0 + np.abs(a))
    margin = np.where(
        np.isfinite(margin), margin, np.inf
    )  # non-finite values are the finite check's job
    violating = np.flatnonzero(margin < 0)
    if violating.size:
        # Show the violation nearest typical training values (r near 1, small |A|); it is the
        # most useful to whoever repairs the drift. Mention the worst one too.
        i = violating[np.argmin(np.abs(np.log(r[violating])) + np.abs(a[violating]) / A_MAX)]
        w = violating[np.argmin(values[violating])]
        worst = (
            ""
            if w == i
            else (
                f" (the most negative found: drift(r={_fmt(r[w])}, A={_fmt(a[w])}) = "
                f"{_fmt(values[w])})"
            )
        )
        return CheckResult(
            NON_NEGATIVE.name,
            False,
            f"drift(r={_fmt(r[i])}, A={_fmt(a[i])}) = {_fmt(values[i])} < 0; "
            f"a drift must be non-negative for every ratio and advantage{worst}",
            {"r": float(r[i]), "A": float(a[i]), "value": float(values[i])},
        )
    lowest = values[np.isfinite(values)].min() if np.isfinite(values).any() else float("nan")
    how = (
        "a grid, random points and a gradient search for negative values"
        if search
        else f"{r.size} points"
    )
    return CheckResult(NON_NEGATIVE.name, True, f"minimum {_fmt(lowest)} over {how}")


def zero_at_one(probe: Probe, points: Points, tol: Tolerances) -> CheckResult:
    a = points.at_one
    values = probe.values(np.ones_like(a), a)
    excess = np.abs(values) - tol.value * (1.0 + np.abs(a))
    excess = np.where(np.isfinite(excess), excess, np.inf)
    i = int(np.argmax(excess))
    if excess[i] > 0:
        return CheckResult(
            ZERO_AT_ONE.name,
            False,
            f"drift(r=1, A={_fmt(a[i])}) = {_fmt(values[i])}; a drift must be exactly 0 "
            "when the policy has not changed (r = 1)",
            {
                "r": 1.0,
                "A": float(a[i]),
                "value": float(values[i]) if np.isfinite(values[i]) else str(values[i]),
            },
        )
    return CheckResult(
        ZERO_AT_ONE.name, True, f"|drift(1, A)| <= {tol.value:g}·(1+|A|) for {a.size} advantages"
    )


def _kinked(small, large, steps: tuple[float, float], allowed, xp=np):
    """A one-sided quotient that does not shrink with the step: at the small step it is above
    `allowed` and keeps more than halfway between the share a smooth drift keeps
    (small/large step, the quotient being proportional to the step) and all of it. `xp`:
    numpy, or jax.numpy inside training (the runtime monitor)."""
    keeps = 0.5 * (1.0 + steps[0] / steps[1])
    return ~xp.isfinite(small) | (
        (xp.abs(small) > allowed) & (xp.abs(small) > keeps * xp.abs(large))
    )


def zero_slope(probe: Probe, points: Points, tol: Tolerances) -> CheckResult:
    a = points.flat
    ones = np.ones_like(a)
    at_one = probe.values(ones, a)

    def quotients(side: int, steps: tuple[float, float]) -> list[np.ndarray]:
        return [side * (probe.values(ones + side * h, a) - at_one) / h for h in steps]

    right, left = quotients(+1, points.right_steps), quotients(-1, points.left_steps)
    autodiff = probe.slope(ones, a)
    scale = 1.0 + np.abs(a)
    bad_autodiff = ~np.isfinite(autodiff) | (np.abs(autodiff) > tol.slope * scale)
    kinked_right = _kinked(*right, points.right_steps, tol.kink * scale)
    kinked_left = _kinked(*left, points.left_steps, tol.kink * scale)
    bad = bad_autodiff | kinked_right | kinked_left
    if bad.any():
        # Report the advantage with the largest one-sided slope.
        worst = np.where(
            bad, np.nan_to_num(np.maximum(np.abs(right[0]), np.abs(left[0])), nan=np.inf), -1.0
        )
        i = int(np.argmax(worst))
        example = {
            "r": 1.0,
            "A": float(a[i]),
            "autodiff_slope": float(autodiff[i]),
            "left_slope": float(left[0][i]),
            "right_slope": float(right[0][i]),
            "step": float(min(points.right_steps[0], points.left_steps[0])),
            "kink": None if bad_autodiff[i] else ("right" if kinked_right[i] else "left"),
        }
        if bad_autodiff[i]:
            what = f"its derivative in r at r=1, A={_fmt(a[i])} is {_fmt(autodiff[i])}"
        else:
            what = (
                f"it has a kink at r=1 for A={_fmt(a[i])}: slope {_fmt(left[0][i])} from the left "
                f"and {_fmt(right[0][i])} from the right (over steps of {example['step']:g}), "
                "not shrinking towards 0"
            )
        return CheckResult(
            ZERO_SLOPE.name,
            False,
            f"a drift must have zero slope in r at r = 1, but {what}",
            example,
        )
    return CheckResult(
        ZERO_SLOPE.name,
        True,
        f"autodiff and one-sided finite differences (steps {points.right_steps[1]:g} and "
        f"{points.right_steps[0]:g}) vanish at r = 1 for {a.size} advantages",
    )


DERIVATIVE_STEP = 1e-6  # relative step of the float64 difference quotients
FLOAT32_NUDGE = 1e-6  # relative: either side of a float32 point, where a kink may sit
JITTER = 3e-6  # relative, times 1 to 2: points moved a few float32 ulps off the grid


def derivative_of_values(
    probe: Probe, points: Points, tol: Tolerances, reference=None
) -> CheckResult:
    """The autodiff slope in r agrees with the derivative of the values, at every point the
    finite condition looks at. In float64 (`reference` None) the values' derivative is taken
    from one-sided difference quotients at steps h and 2h on each side: one side must agree
    within its own truncation (how much the quotient moves from h to 2h), its rounding and
    `tol.derivative`, so a kink within h of a point is not a disagreement. With `reference`
    (float64 autodiff slopes, `reference(r, a)`) the float32 slope must match it at the
    float32 point or a nudge to either side (where the kink of a max sits), within
    `tol.derivative` of the slope's size. The points are moved off the grid by a few float32
    ulps (`JITTER`)."""
    r, a = points.finite
    # Off the round numbers where honest kinks sit (clip at 0.8): at a tie autodiff may
    # return any mix of the two sides, or neither, and no step resolves that.
    r = r * (1.0 + JITTER * (1.0 + (np.arange(r.size) * 0.6180339887) % 1.0))
    slope = probe.slope(r, a)
    scale = tol.derivative * (1.0 + np.abs(a) + np.abs(np.nan_to_num(slope)))
    checked = np.isfinite(slope)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if reference is None:
            at = probe.values(r, a)
            h = DERIVATIVE_STEP * r
            checked &= np.isfinite(at)
            sides = []  # (one-sided quotient, its slack) on the right, then on the left
            for side in (1.0, -1.0):
                near, far = (probe.values(r + side * k * h, a) for k in (1.0, 2.0))
                q_near, q_far = side * (near - at) / h, side * (far - at) / (2.0 * h)
                rounding = 4e-16 * (np.abs(at) + np.abs(near)) / h
                sides.append((q_near, 3.0 * np.abs(q_far - q_near) + rounding + scale))
            (right, right_slack), (left, left_slack) = sides
            agrees = (np.abs(slope - right) <= right_slack) | (np.abs(slope - left) <= left_slack)
            # At a kink autodiff may take any mix of the two sides (max splits a tie evenly).
            low = np.minimum(right - right_slack, left - left_slack)
            high = np.maximum(right + right_slack, left + left_slack)
            agrees |= (slope >= low) & (slope <= high)
            expected = right
        else:
            r32 = r.astype(np.float32).astype(np.float64)
            nudged = [reference(r32 * (1.0 + n), a) for n in (0.0, FLOAT32_NUDGE, -FLOAT32_NUDGE)]
            expected = nudged[0]
            slack = scale + tol.derivative * np.max(np.abs(nudged), axis=0)
            low, high = np.min(nudged, axis=0) - slack, np.max(nudged, axis=0) + slack
            agrees = (slope >= low) & (slope <= high)
            checked &= np.isfinite(expected) & (np.abs(expected) <= FLOAT32_MAX)
    bad = checked & ~agrees
    how = "one-sided difference quotients" if reference is None else "float64 autodiff"
    if bad.any():
        i = int(np.argmax(bad))
        return CheckResult(
            DERIVATIVE.name,
            False,
            f"at r={_fmt(r[i])}, A={_fmt(a[i])} the derivative in r that training follows "
            f"(autodiff) is {_fmt(slope[i])}, but the values' derivative ({how}) is "
            f"{_fmt(expected[i])}: the gradient differs from the values ({bad.mean():.1%} of "
            "the points checked)",
            {
                "r": float(r[i]),
                "A": float(a[i]),
                "autodiff_slope": float(slope[i]),
                "values_slope": float(expected[i]),
            },
        )
    return CheckResult(
        DERIVATIVE.name,
        True,
        f"autodiff slopes in r agree with {how} at {int(checked.sum())} points",
    )


def _all(
    probe: Probe, points: Points, tol: Tolerances, search=None, excused=None, reference=None
) -> list[CheckResult]:
    """The four conditions; with `reference` (float64 autodiff) or `search` (the float64
    layer), also the derivative condition, after them."""
    results = [
        finite(probe, points, tol, excused),
        non_negative(probe, points, tol, search),
        zero_at_one(probe, points, tol),
        zero_slope(probe, points, tol),
    ]
    if search is not None or reference is not None:
        results.append(derivative_of_values(probe, points, tol, reference))
    return results


# -- in the sandbox: float64 JAX, thoroughly -----------------------------------------------------

NEAR_ONE = 1.0 + np.array(
    [-0.5, -0.3, -0.2, -0.1, -0.05, -0.01, -1e-3, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5]
)


def _random_points(n: int = 20_000, seed: int = 0, a_max: float = A_MAX):
    """Log-uniform ratios and uniform advantages, plus a cluster of typical training values."""
    rng = np.random.default_rng(seed)
    r = np.exp(rng.uniform(np.log(R_MIN), np.log(R_MAX), n))
    near_one = np.exp(rng.normal(0.0, 0.1, n // 4))
    a = np.concatenate([rng.uniform(-a_max, a_max, n), rng.normal(0.0, 1.0, n // 4)])
    return np.concatenate([r, near_one]), a


def _sandbox_points() -> Points:
    r_grid = unique(np.geomspace(R_MIN, R_MAX, 601), NEAR_ONE)
    a_grid = unique(np.linspace(-A_MAX, A_MAX, 81), [-1e-2, -1e-3, 0.0, 1e-3, 1e-2])
    on_grid = grid(r_grid, a_grid)
    # Finiteness on the grid and random points; non-negativity must hold for every advantage:
    # look beyond the grid's range as well.
    r_rand, a_rand = _random_points()
    r_wide, a_wide = _random_points(seed=1, a_max=5 * A_MAX)
    steps = (1e-6, 1e-4)
    return Points(
        finite=(np.concatenate([on_grid[0], r_rand]), np.concatenate([on_grid[1], a_rand])),
        slopes=(r_grid.repeat(9), np.tile(np.linspace(-A_MAX, A_MAX, 9), r_grid.size)),
        non_negative=(np.concatenate([on_grid[0], r_wide]), np.concatenate([on_grid[1], a_wide])),
        at_one=np.concatenate([a_grid, _random_points(2000, seed=3)[1]]),
        flat=unique(np.linspace(-A_MAX, A_MAX, 41), [-0.5, -0.1, -1e-2, 1e-2, 0.1, 0.5]),
        right_steps=steps,
        left_steps=steps,
    )


SANDBOX_POINTS = _sandbox_points()


def _descent_search(drift, starts: int = 256):
    """Gradient descent on the drift value over (log r, A) in the checked box, started from
    the lowest points found so far and from random points."""

    def search(r_start, a_start, values):
        import jax.numpy as jnp

        order = np.argsort(np.where(np.isfinite(values), values, np.inf))[: starts // 2]
        rng = np.random.default_rng(2)
        u0 = np.concatenate(
            [np.log(r_start[order]), rng.uniform(np.log(R_MIN), np.log(R_MAX), starts // 2)]
        )
        a0 = np.concatenate([a_start[order], rng.uniform(-A_MAX, A_MAX, starts // 2)])
        x = np.asarray(_compiled_descent()(drift, jnp.stack([u0, a0], axis=1)))
        return np.exp(x[:, 0]), x[:, 1]

    return search


@functools.cache
def _compiled_descent(steps: int = 150):
    """descend(drift, starts [n, 2]) -> where each start ends; the drift is an argument (a
    `jax.tree_util.Partial`), so drifts that differ only in their arrays share the compile."""
    import jax
    import jax.numpy as jnp
    import optax

    bounds_low = jnp.array([np.log(R_MIN), -A_MAX])
    bounds_high = jnp.array([np.log(R_MAX), A_MAX])
    optimizer = optax.adam(0.05)

    def descend(drift, x):
        def value(x):
            return drift(jnp.exp(x[0])[None], x[1][None])[0]

        def step(carry, _):
            x, state = carry
            g = jax.grad(value)(x)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            updates, state = optimizer.update(g, state)
            x = jnp.clip(x + updates, bounds_low, bounds_high)
            return (x, state), None

        (x, _), _ = jax.lax.scan(step, (x, optimizer.init(x)), None, steps)
        return x

    return jax.jit(jax.vmap(descend, in_axes=(None, 0)))


# One-sided quotient steps in float32, the small one as in float64: an LPO network (the paper's
# relu(net - 1e-6)) keeps a flat zone of about 1e-6 / its slope around r = 1, which the float64
# checks accept while that slope is below about 1; a coarser step would call it a kink.
FLOAT32_STEPS = (1e-6, 1e-5)
FLOAT32_POINTS = dataclasses.replace(
    SANDBOX_POINTS, right_steps=FLOAT32_STEPS, left_steps=FLOAT32_STEPS
)
FLOAT32_MAX = float(np.finfo(np.float32).max)
F32_EPS = float(np.finfo(np.float32).eps)


def check_drift(
    drift, filename: str = "candidate.py", *, sizes=None, proof_function=None
) -> list[CheckResult]:
    """The four drift conditions, each with a counterexample when it fails, in three layers:
    in float64 on the sandbox's points (with a gradient search for negative values); then in
    float32 in calls of every length in `sizes` (default: every length training calls a drift
    with at any budget, pieces/base.py `call_sizes`), as training calls it, so a drift that
    behaves differently by dtype or array size is seen where it trains; then the certificate
    (pieces/_drift_certificate.py) at the training lengths, which proves a condition, finds a
    counterexample the sampling missed, or leaves it unproved. `proof_function` is traced for
    the certificate in place of `drift` (an expression program's tree)."""
    import jax

    from sandbox.checks.contract import describe_failure
    from sandbox.pieces._drift_certificate import certify_drift
    from sandbox.pieces.base import SizedProbe, call_sizes

    sizes = tuple(sizes or call_sizes(PIECE))
    try:
        with jax.enable_x64(True):
            probe = JaxProbe(drift)
            results = _all(
                probe, SANDBOX_POINTS, TOLERANCES["float64"], _descent_search(probe.function)
            )
        if not all(r.passed for r in results):
            return results

        def beyond_float32(r, a, derivative: bool):
            with jax.enable_x64(True):
                exact = probe.slope(r, a) if derivative else probe.values(r, a)
            return np.abs(exact) > FLOAT32_MAX

        # Every call length is checked on the same points: their float64 reference slopes
        # are the same too, so they are computed once (most of the stage's time otherwise).
        reference_slopes: dict[bytes, np.ndarray] = {}

        def float64_slope(r, a):
            key = hashlib.sha256(r.tobytes() + a.tobytes()).digest()
            if key not in reference_slopes:
                with jax.enable_x64(True):
                    reference_slopes[key] = probe.slope(r, a)
            return reference_slopes[key]

        for size in sizes:
            as_trained = _all(
                SizedProbe(drift, size),
                FLOAT32_POINTS,
                TOLERANCES["float32"],
                excused=beyond_float32,
                reference=float64_slope,
            )
            if not all(r.passed for r in as_trained):
                where = f"in float32 on arrays of {size} entries: "
                return [
                    r if r.passed else dataclasses.replace(r, detail=where + r.detail)
                    for r in as_trained
                ]
        proofs = certify_drift(
            drift,
            tuple(s for s in sizes if s not in OTHER_SIZES),  # training's own call lengths
            proof_function,
            beyond_float32,
        )
    except Exception as error:  # the candidate crashed on concrete inputs
        detail = describe_failure(error, filename)
        return [CheckResult(c.name, False, detail) for c in CONDITIONS]
    proved = [_with_proof(result, proof) for result, proof in zip(results, proofs, strict=False)]
    return proved + results[len(proofs) :]  # the derivative condition: checked, not proved


def _with_proof(result: CheckResult, proof) -> CheckResult:
    from sandbox.vocabulary import Proof

    if proof.verdict == Proof.VIOLATED:
        return CheckResult(
            result.name,
            False,
            f"the certificate found a counterexample the sampled checks missed: {proof.detail}",
            proof.counterexample,
            proof.to_dict(),
        )
    return dataclasses.replace(result, proof=proof.to_dict())


# -- the mutation proposer's pre-screen: the same conditions on coarser points -------------------


def _screen_points() -> Points:
    probe = grid(
        unique(np.geomspace(R_MIN, R_MAX, 25), NEAR_ONE),
        unique(np.linspace(-10, 10, 11), [-50, -1e-2, 1e-2, 50]),
    )
    dense = grid(
        unique(
            np.geomspace(R_MIN, R_MAX, 301),
            NEAR_ONE,
            1 + np.geomspace(1e-4, 0.5, 12),
            1 - np.geomspace(1e-4, 0.5, 12),
        ),
        unique(
            np.linspace(-10, 10, 41),
            [-50, -40, -30, -20, -15, -12.5, -1e-2, -1e-3, 1e-3, 1e-2, 12.5, 15, 20, 30, 40, 50],
        ),
    )
    line = unique(np.linspace(-10, 10, 41), [-50, -20, -0.5, -0.1, -1e-2, 1e-2, 0.1, 0.5, 20, 50])
    steps = SANDBOX_POINTS.right_steps
    both = (np.concatenate([probe[0], dense[0]]), np.concatenate([probe[1], dense[1]]))
    return Points(
        finite=tuple(probe),
        slopes=tuple(probe),
        non_negative=both,
        at_one=line,
        flat=line,
        right_steps=steps,
        left_steps=steps,
    )


SCREEN_POINTS = _screen_points()


def screen(probe: Probe) -> str | None:
    tol = TOLERANCES["float64"]
    p = SCREEN_POINTS
    return first_failure(
        [
            (FINITE, lambda: finite(probe, p, tol)),
            (NON_NEGATIVE, lambda: non_negative(probe, p, tol)),
            (ZERO_AT_ONE, lambda: zero_at_one(probe, p, tol)),
            (ZERO_SLOPE, lambda: zero_slope(probe, p, tol)),
        ]
    )


# -- on a landscape grid (float32 values computed in the sandbox) ----------------------------------


class _GridProbe:
    """A landscape as a probe: it answers only at its own grid points."""

    def __init__(self, ratio, advantage, drift, d_objective_dr):
        self.ratio, self.advantage = (
            np.asarray(ratio, np.float64),
            np.asarray(advantage, np.float64),
        )
        self.drift = np.asarray(drift, np.float64)
        self.dD_dr = self.advantage[:, None] - np.asarray(
            d_objective_dr, np.float64
        )  # dJ/dr = A - dD/dr

    def _index(self, axis: np.ndarray, x: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(axis, x), 0, axis.size - 1)
        i = np.where((i > 0) & (np.abs(axis[i - 1] - x) < np.abs(axis[i] - x)), i - 1, i)
        if not np.allclose(axis[i], x, rtol=1e-5, atol=1e-7):
            raise ValueError("a landscape answers only at its grid points")
        return i

    def values(self, r, a):
        return self.drift[self._index(self.advantage, a), self._index(self.ratio, r)]

    def slope(self, r, a):
        return self.dD_dr[self._index(self.advantage, a), self._index(self.ratio, r)]


def landscape_check(ratio, advantage, drift, d_objective_dr) -> list[CheckResult]:
    """The conditions as far as a landscape grid shows them, in float32 tolerances; the kink
    test compares a grid point's quotient with the next one's on each side of r = 1."""
    probe = _GridProbe(ratio, advantage, drift, d_objective_dr)
    r, a = probe.ratio, probe.advantage
    one = int(np.argmin(np.abs(r - 1.0)))
    everywhere = tuple(grid(r, a))
    if not 2 <= one <= r.size - 3:
        raise ValueError("the landscape grid needs two ratios on each side of 1")
    return _all(
        probe,
        Points(
            finite=everywhere,
            slopes=everywhere,
            non_negative=everywhere,
            at_one=a,
            flat=a,
            right_steps=(r[one + 1] - 1.0, r[one + 2] - 1.0),
            left_steps=(1.0 - r[one - 1], 1.0 - r[one - 2]),
        ),
        TOLERANCES["float32"],
    )


# -- during training: the runtime monitor ----------------------------------------------------------

MONITOR_STEPS = (1e-6, 2e-6)  # the small one-sided step, log-uniform here (FLOAT32_STEPS)
MONITOR_STEP_RATIO = 10.0  # the large step, a multiple of the small one
MONITOR_SHARE = 4  # a quarter of each minibatch's entries get the probes
MONITOR_PAIR_STEP = 1e-3  # relative: the partner of a real entry, for its difference quotient


def _probed(minibatch: int) -> int:
    return max(1, minibatch // MONITOR_SHARE)


class DriftMonitor:
    """Each minibatch's drift call also evaluates r = 1, 1 + s·h and 1 + s·10h (s = +-1 at
    random, h random per call) on a quarter of the minibatch's own advantages, and the
    partners r·(1 + s·1e-3) of a quarter of its own ratios; the call runs under jax.jvp, so
    every entry also has the autodiff slope training follows. The values the policy loss
    uses must be finite and non-negative; at r = 1 the drift must be 0, its autodiff slope
    0 and its one-sided quotients must shrink with the step (no kink); and between each real
    entry and its partner the values' difference quotient must lie between the two autodiff
    slopes (the mean value theorem), all in float32 tolerances."""

    slopes = True

    def call_sizes(self, minibatch: int) -> tuple[int, ...]:
        return (minibatch + 4 * _probed(minibatch),)

    def noise_size(self, minibatch: int) -> int:
        return _probed(minibatch) + 1  # a side per probed entry, and the step

    def probes(self, inputs, noise):
        import jax.numpy as jnp

        ratio, advantage = inputs
        k = _probed(ratio.shape[0])  # a minibatch is a random draw: its first k are too
        side = jnp.where(noise[:k] < 0.5, 1.0, -1.0)
        low, high = np.log(MONITOR_STEPS[0]), np.log(MONITOR_STEPS[1])
        h = jnp.exp(low + (high - low) * noise[k])
        ones = jnp.ones((k,), ratio.dtype)
        ratios = jnp.concatenate(
            [
                ones,
                1.0 + side * h,
                1.0 + side * (MONITOR_STEP_RATIO * h),
                ratio[:k] * (1.0 + side * MONITOR_PAIR_STEP),
            ]
        )
        return ratios, jnp.tile(advantage[:k], 4)

    def inspect(self, inputs, values, probe_inputs, probe_values, slopes):
        import jax.numpy as jnp

        tol = TOLERANCES["float32"]
        ratio, advantage = inputs
        scale = 1.0 + jnp.abs(advantage)
        finite = jnp.isfinite(values)

        def pick(score, **fields):
            """The worst entry: one argmax and one gather of all its fields together."""
            i = jnp.argmax(score)
            column = jnp.stack([score, *fields.values()])[:, i]
            return dict(zip(("score", *fields), column, strict=True))

        k = _probed(ratio.shape[0])
        probed, probed_scale = advantage[:k], scale[:k]
        at_one, small, large, partner = (probe_values[j * k : (j + 1) * k] for j in range(4))
        step_small = probe_inputs[0][k : 2 * k] - 1.0  # exact in float32 near 1
        step_large = probe_inputs[0][2 * k : 3 * k] - 1.0
        q_small, q_large = (small - at_one) / step_small, (large - at_one) / step_large
        allowed = tol.kink * probed_scale
        kinked = _kinked(q_small, q_large, (1.0, MONITOR_STEP_RATIO), allowed, xp=jnp)
        side = jnp.sign(step_small)
        kink_score = jnp.where(
            kinked, jnp.where(jnp.isfinite(q_small), jnp.abs(q_small) - allowed, jnp.inf), -1.0
        )
        # The autodiff slope at r = 1, which the quotients cannot see (a slope carried only
        # by the derivative, not the values).
        real_slopes, probe_slopes = slopes
        slope_at_one = probe_slopes[:k]
        slope_score = jnp.where(
            jnp.isfinite(slope_at_one),
            jnp.abs(slope_at_one) - tol.slope * probed_scale,
            jnp.inf,
        )
        zero_slope = jnp.maximum(kink_score, slope_score)
        # The values' quotient between a real entry and its partner against the hull of the
        # two autodiff slopes: what training follows must be the values' derivative.
        here, there = real_slopes[:k], probe_slopes[3 * k :]
        width = probe_inputs[0][3 * k :] - ratio[:k]
        quotient = (partner - values[:k]) / width
        # Float32 rounding of the two values over their distance. The error of a value is
        # relative to the terms it was computed from, not to the value itself: a drift that is
        # a small difference of O(1 + |A|) terms (zero at r = 1 by subtraction, as LPO's is)
        # carries their rounding, which dominates where r is tiny and so is the distance.
        magnitude = jnp.abs(partner) + jnp.abs(values[:k]) + probed_scale
        rounding = 4.0 * F32_EPS * magnitude / jnp.abs(width)
        slack = tol.kink * probed_scale + tol.derivative * (jnp.abs(here) + jnp.abs(there))
        outside = jnp.maximum(
            jnp.minimum(here, there) - quotient, quotient - jnp.maximum(here, there)
        )
        agreement = jnp.where(
            jnp.isfinite(quotient), outside - slack - rounding, -1.0
        )  # non-finite values are the value watch's
        derivative = jnp.where(jnp.isfinite(real_slopes[:k]), agreement, jnp.inf)
        nonfinite_slopes = jnp.where(jnp.isfinite(real_slopes), -1.0, jnp.inf)
        j = jnp.argmax(nonfinite_slopes)
        return {
            # Non-finite values score above any negative one: one reduction for both (describe
            # words a non-finite value as such).
            NON_NEGATIVE.name: pick(
                jnp.where(finite, -(values + tol.value * scale), jnp.inf),
                r=ratio,
                A=advantage,
                value=values,
            ),
            ZERO_AT_ONE.name: pick(
                jnp.where(
                    jnp.isfinite(at_one), jnp.abs(at_one) - tol.value * probed_scale, jnp.inf
                ),
                A=probed,
                value=at_one,
            ),
            ZERO_SLOPE.name: pick(
                zero_slope,
                A=probed,
                quotient=q_small,
                step=jnp.abs(step_small),
                side=side,
                autodiff=slope_at_one,
                kink=(kink_score >= slope_score).astype(slope_at_one.dtype),
            ),
            DERIVATIVE.name: pick(
                jnp.concatenate([derivative, nonfinite_slopes[j][None]]),
                r=jnp.concatenate([ratio[:k], ratio[j][None]]),
                A=jnp.concatenate([probed, advantage[j][None]]),
                autodiff=jnp.concatenate([here, real_slopes[j][None]]),
                partner_autodiff=jnp.concatenate([there, real_slopes[j][None]]),
                quotient=jnp.concatenate([quotient, real_slopes[j][None]]),
            ),
        }

    def describe(self, condition: str, f: dict[str, float], update: int) -> str:
        at = f"at update {update}"
        if condition == NON_NEGATIVE.name and not np.isfinite(f["value"]):
            return (
                f"non-finite during training: drift({f['r']:.4g}, {f['A']:.4g}) = {f['value']} {at}"
            )
        if condition == NON_NEGATIVE.name:
            return (
                f"negative during training: drift({f['r']:.4g}, {f['A']:.4g}) = "
                f"{f['value']:.4g} {at}"
            )
        if condition == ZERO_AT_ONE.name:
            return f"nonzero at r=1 during training: drift(1, {f['A']:.4g}) = {f['value']:.4g} {at}"
        if condition == DERIVATIVE.name and not np.isfinite(f["autodiff"]):
            return (
                f"non-finite gradient during training: d drift/dr at r = {f['r']:.4g}, "
                f"A = {f['A']:.4g} is {f['autodiff']} {at}"
            )
        if condition == DERIVATIVE.name:
            return (
                f"gradient not the values' during training: at r = {f['r']:.4g}, "
                f"A = {f['A']:.4g} autodiff gives slopes {f['autodiff']:.4g} and "
                f"{f['partner_autodiff']:.4g} {MONITOR_PAIR_STEP:g}·r apart, but the values' "
                f"difference quotient between them is {f['quotient']:.4g} {at}"
            )
        if not f["kink"]:
            return (
                f"slope at r=1 during training: the autodiff derivative at A = {f['A']:.4g} is "
                f"{f['autodiff']:.4g} {at}"
            )
        side = "right" if f["side"] > 0 else "left"
        return (
            f"slope at r=1 during training: the one-sided difference quotient from the {side} "
            f"at A = {f['A']:.4g} is {f['quotient']:.4g} over a step of {f['step']:.2g} and does "
            f"not shrink with the step (a kink or a nonzero slope), {at}"
        )


# -- the behaviour signature's inputs --------------------------------------------------------------


def _behaviour_inputs():
    import jax.numpy as jnp

    ratio = np.concatenate([np.geomspace(0.25, 4.0, 12), [0.9, 0.97, 1.0, 1.03, 1.1]])
    advantage = np.array([-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0])
    r, a = np.meshgrid(ratio, advantage)
    return jnp.asarray(r.ravel(), jnp.float32), jnp.asarray(a.ravel(), jnp.float32)


def typical(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ratios and advantages as a minibatch has them: ratios near 1, advantages standardised
    exactly as the trainer standardises them (in float32)."""
    ratio = np.exp(rng.normal(0.0, 0.2, n))
    advantage = rng.standard_t(3.0, n).astype(np.float32)
    advantage = (advantage - advantage.mean()) / (advantage.std() + np.float32(1e-8))
    return ratio, advantage.astype(np.float64)


def behaviour(drift) -> np.ndarray:
    return np.asarray(drift(*_behaviour_inputs()), dtype=np.float64)


PIECE = Piece(
    kind="drift",
    plug_point=PlugPoint.DRIFT,
    contract=Contract.ELEMENTWISE,
    arity=2,
    default=("mirror_drift", "ppo"),
    check=check_drift,
    behaviour=behaviour,
    evidence=(
        "The Mirror Learning conditions are checked numerically (a grid and random points with "
        "ratio in [1e-3, 1e3] and |advantage| <= 10, autodiff and finite-difference slopes at "
        "ratio 1): strong evidence, not a symbolic proof."
    ),
    screen=Screen(
        check=screen,
        fingerprint=tuple(SCREEN_POINTS.finite),
        anchor=(np.ones_like(SCREEN_POINTS.at_one), SCREEN_POINTS.at_one),
    ),
    has_landscape=True,
    monitor=DriftMonitor(),
    typical=typical,
)
