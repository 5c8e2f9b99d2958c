"""Certificates of the Mirror Learning conditions for a drift, by branch and bound on interval
bounds of its traced computation (sandbox/checks/certificate.py, intervals.py).

Domain: r in [1e-3, 1e3], |A| <= 50, the drift traced as training calls it (float32 arrays of
a training call's length). Each condition is `proved` (with drift.CERTIFIED tolerances: a
drift >= -1e-4·(1+|A|) is non-negative, |drift(1, A)| <= 1e-4·(1+|A|) is zero, a slope
within 1e-3·(1+|A|) is zero), `violated` (a counterexample found by evaluating the drift,
in the words of the numeric checks) or `unproved`:

- finite: no intermediate value of the drift or of its derivative in r (in reverse mode, as
  training computes it) can be NaN or infinite on the domain;
- non_negative: the lower bound is the better of the plain interval bound and a mean-value
  bound in r around r = 1 (for boxes that touch 1) or the box's centre, which tames
  expressions like r - 1 - log r whose plain bounds do not close near 1;
- zero_at_one: the value at r = 1 exactly, over boxes of A;
- zero_slope_at_one: the derivative in r over one-sided neighbourhoods [1, 1 + d] and
  [1 - d, 1] (d = 1e-12, in real arithmetic), so a kink at 1 (whose autodiff slope at 1 is 0) is not
  proved flat; by the mean value theorem every one-sided difference quotient at 1 with a
  step up to d lies within those bounds. The bound is also taken in mean-value form along A
  (the slope at the box's middle A, plus the second derivative's reach).
"""

import re

import numpy as np

from sandbox.checks.certificate import (
    Boxes,
    ConditionProof,
    Verdict,
    branch_and_bound,
    grid_boxes,
)
from sandbox.checks.intervals import Interval, evaluate
from sandbox.pieces._drift_conditions import (
    CERTIFIED,
    FINITE,
    FLOAT32_STEPS,
    NON_NEGATIVE,
    TOLERANCES,
    ZERO_AT_ONE,
    ZERO_SLOPE,
    Points,
    finite,
    is_kinked,
    non_negative,
    zero_at_one,
)
from sandbox.pieces.base import SizedProbe
from sandbox.vocabulary import Proof

R_RANGE, A_RANGE = (1e-3, 1e3), 50.0
# Bounds prove the CERTIFIED tolerances; a counterexample is confirmed by the float32 checks'
# own test, in their tolerances (evaluations are noisy where bounds are not).
FLOAT32 = TOLERANCES["float32"]
R_EDGES = [
    1e-3,
    1e-2,
    0.1,
    0.5,
    1.0,
    2.0,
    10.0,
    100.0,
    1e3,
]  # 1 is an edge: boxes never straddle it
A_EDGES = [-50.0, -10.0, -1.0, 0.0, 1.0, 10.0, 50.0]
# The one-sided neighbourhoods of r = 1, in real arithmetic: narrow enough that a smooth but
# steep drift's slope there stays within tolerance, wide enough to hold a kink's other side.
SIDE = 1e-12
BUDGET = 40_000  # boxes per condition
SECONDS = 10.0  # per condition
DOMAIN = f"r in [{R_RANGE[0]:g}, {R_RANGE[1]:g}], |A| <= {A_RANGE:g}"


class _Traced:
    """The drift's value and derivatives in r and A as jaxprs at one training call length,
    and the drift itself called at that length for counterexamples."""

    def __init__(self, drift, proof_function, lanes: int):
        import jax
        import jax.numpy as jnp

        spec = jax.ShapeDtypeStruct((lanes,), jnp.float32)

        def along(function, k):
            def derivative(r, a):
                tangents = [jnp.zeros_like(r), jnp.zeros_like(a)]
                tangents[k] = jnp.ones_like(r)
                return jax.jvp(function, (r, a), tuple(tangents))[1]

            return derivative

        def trained(r, a):  # the derivative as training computes it: reverse mode
            _, pull = jax.vjp(lambda r: proof_function(r, a), r)
            return pull(jnp.ones_like(r))[0]

        self.lanes = lanes
        d_r = along(proof_function, 0)
        self.jaxprs = {
            "value": jax.make_jaxpr(proof_function)(spec, spec),
            "d_r": jax.make_jaxpr(d_r)(spec, spec),
            "d_r_trained": jax.make_jaxpr(trained)(spec, spec),
            "d_a": jax.make_jaxpr(along(proof_function, 1))(spec, spec),
            "d_ra": jax.make_jaxpr(along(d_r, 1))(spec, spec),  # of the slope, in A
        }
        self.probe = SizedProbe(drift, lanes)

    def bounds(
        self, which: str, r: Interval, a: Interval, rounding: bool = True
    ) -> tuple[Interval, np.ndarray]:
        n = np.size(r.lo)
        padded = (_pad(r, self.lanes), _pad(a, self.lanes))
        (out,), hazard = evaluate(self.jaxprs[which], *padded, rounding=rounding)
        cut = lambda x: np.broadcast_to(x, (self.lanes,))[:n]  # noqa: E731
        return Interval(cut(out.lo), cut(out.hi)), cut(hazard)

    def in_float64(self, which: str, r: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The traced computation at points, in float64 arithmetic: resolves steps that
        float32 evaluation drowns in rounding."""
        values = []
        for i in range(0, r.size, self.lanes):
            part = [Interval.point(x[i : i + self.lanes]) for x in (r, a)]
            values.append(self.bounds(which, *part, rounding=False)[0].lo)
        return np.concatenate(values)


def _pad(x: Interval, lanes: int) -> Interval:
    def pad(v):
        v = np.atleast_1d(np.asarray(v, np.float64))
        return np.concatenate([v, np.repeat(v[-1:], lanes - v.size)])

    return Interval(pad(x.lo), pad(x.hi))


def _smallest_abs(a: Interval) -> np.ndarray:
    return np.where((a.lo <= 0) & (a.hi >= 0), 0.0, np.minimum(np.abs(a.lo), np.abs(a.hi)))


def _largest_abs(x: Interval) -> np.ndarray:
    return np.nan_to_num(np.maximum(np.abs(x.lo), np.abs(x.hi)), nan=np.inf)


def _product_lo(x: Interval, y: Interval) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        products = [x.lo * y.lo, x.lo * y.hi, x.hi * y.lo, x.hi * y.hi]
    return np.minimum.reduce([np.where(np.isnan(p), -np.inf, p) for p in products])


def _midpoints(boxes: Boxes) -> tuple[np.ndarray, np.ndarray]:
    r_lo, r_hi = boxes.lo[:, 0], boxes.hi[:, 0]
    return np.sqrt(r_lo * r_hi), 0.5 * (boxes.lo[:, 1] + boxes.hi[:, 1])


def _points(r: np.ndarray, a: np.ndarray) -> Points:
    pair = (r, a)
    return Points(pair, pair, pair, a, a, FLOAT32_STEPS, FLOAT32_STEPS)


def _split(traced: _Traced, r: Interval, a: Interval, boxes: Boxes, d_r: Interval) -> np.ndarray:
    """Bisect along the input whose width costs the bound more (largest |derivative| x width);
    `d_r`: the slope bounds in r the caller already has."""
    d_a, _ = traced.bounds("d_a", r, a)
    with np.errstate(invalid="ignore", over="ignore"):
        cost_r = np.nan_to_num(_largest_abs(d_r) * (boxes.hi[:, 0] - boxes.lo[:, 0]), nan=np.inf)
        cost_a = np.nan_to_num(_largest_abs(d_a) * (boxes.hi[:, 1] - boxes.lo[:, 1]), nan=np.inf)
    return np.where(cost_r >= cost_a, 0, 1)


def _violation(found) -> dict | None:
    """A failed numeric check as a counterexample the bounds could not settle."""
    return None if found.passed else {"detail": found.detail, **(found.counterexample or {})}


def _over_domain(name: str, examine, traced: _Traced, proved: str) -> ConditionProof:
    return branch_and_bound(
        name,
        grid_boxes(R_EDGES, A_EDGES),
        examine,
        lanes=traced.lanes,
        geometric=(True, False),
        budget=BUDGET,
        seconds=SECONDS,
        proved=proved,
    )


def _prove_finite(traced: _Traced, tol, excused) -> ConditionProof:
    def examine(boxes: Boxes) -> Verdict:
        r, a = boxes.interval(0), boxes.interval(1)
        value, hazard = traced.bounds("value", r, a)
        # Reverse mode, as training: a NaN derivative in a branch `where` does not take is
        # multiplied by its zero cotangent there, which forward mode never computes.
        slope, slope_hazard = traced.bounds("d_r_trained", r, a)
        settled = ~hazard & ~slope_hazard
        for x in (value, slope):
            settled &= np.isfinite(x.lo) & np.isfinite(x.hi)
        violation = None
        if not settled.all():
            mid = _midpoints(boxes.take(~settled))
            violation = _violation(finite(traced.probe, _points(*mid), FLOAT32, excused))
        return Verdict(settled, _split(traced, r, a, boxes, slope), violation)

    proved = f"no NaN or infinity in the drift or its slope in r for {DOMAIN}"
    return _over_domain(FINITE.name, examine, traced, proved)


def _prove_non_negative(traced: _Traced, tol, excused) -> ConditionProof:
    def examine(boxes: Boxes) -> Verdict:
        r, a = boxes.interval(0), boxes.interval(1)
        value, _ = traced.bounds("value", r, a)
        touches_one = (r.lo == 1.0) | (r.hi == 1.0)
        centre = np.where(touches_one, 1.0, np.sqrt(r.lo * r.hi))
        at_centre, _ = traced.bounds("value", Interval.point(centre), a)
        slope, _ = traced.bounds("d_r", r, a)
        mean_value = at_centre.lo + _product_lo(slope, Interval(r.lo - centre, r.hi - centre))
        lower = np.maximum(np.nan_to_num(value.lo, nan=-np.inf), mean_value)
        settled = lower >= -tol.value * (1.0 + _smallest_abs(a))
        violation = None
        if not settled.all():
            mid = _midpoints(boxes.take(~settled))
            violation = _violation(non_negative(traced.probe, _points(*mid), FLOAT32))
        return Verdict(settled, _split(traced, r, a, boxes, slope), violation)

    proved = f"drift >= -{tol.value:g}·(1+|A|) for {DOMAIN}"
    return _over_domain(NON_NEGATIVE.name, examine, traced, proved)


def _prove_zero_at_one(traced: _Traced, tol, excused) -> ConditionProof:
    def examine(boxes: Boxes) -> Verdict:
        a = boxes.interval(0)
        one = Interval.point(np.ones(len(boxes)))
        value, _ = traced.bounds("value", one, a)
        settled = _largest_abs(value) <= tol.value * (1.0 + _smallest_abs(a))
        violation = None
        if not settled.all():
            mids = 0.5 * (boxes.lo[~settled, 0] + boxes.hi[~settled, 0])
            found = zero_at_one(traced.probe, _points(np.ones_like(mids), mids), FLOAT32)
            violation = _violation(found)
        return Verdict(settled, np.zeros(len(boxes), int), violation)

    return branch_and_bound(
        ZERO_AT_ONE.name,
        grid_boxes(A_EDGES),
        examine,
        lanes=traced.lanes,
        geometric=(False,),
        budget=BUDGET,
        seconds=SECONDS,
        proved=f"|drift(1, A)| <= {tol.value:g}·(1+|A|) for |A| <= {A_RANGE:g}",
    )


def _prove_zero_slope(traced: _Traced, tol, excused) -> ConditionProof:
    # Boxes over (side, A): side 0 is [1 - SIDE, 1], side 1 is [1, 1 + SIDE]; never split.
    def examine(boxes: Boxes) -> Verdict:
        right = boxes.lo[:, 0] >= 0.5
        r = Interval(np.where(right, 1.0, 1.0 - SIDE), np.where(right, 1.0 + SIDE, 1.0))
        a = boxes.interval(1)
        slope, _ = traced.bounds("d_r", r, a)
        # The slope at the box's middle A plus how far it can move along A: products like
        # A·(1 - tanh²(...)) - A, whose plain bounds grow with the width in A, close here.
        centre = 0.5 * (a.lo + a.hi)
        at_centre, _ = traced.bounds("d_r", r, Interval.point(centre))
        change, _ = traced.bounds("d_ra", r, a)
        reach = _largest_abs(change) * 0.5 * (a.hi - a.lo)
        largest = np.minimum(
            _largest_abs(slope), np.nan_to_num(_largest_abs(at_centre) + reach, nan=np.inf)
        )
        settled = largest <= tol.slope * (1.0 + _smallest_abs(a))
        violation = None
        if not settled.all():
            mids = 0.5 * (boxes.lo[~settled, 1] + boxes.hi[~settled, 1])
            violation = _kink(traced, mids, tol)
        return Verdict(settled, np.ones(len(boxes), int), violation)

    return branch_and_bound(
        ZERO_SLOPE.name,
        grid_boxes([0.0, 0.5, 1.0], A_EDGES),
        examine,
        lanes=traced.lanes,
        geometric=(False, False),
        budget=BUDGET,
        seconds=SECONDS,
        proved=(
            f"|d drift/dr| <= {tol.slope:g}·(1+|A|) on both one-sided neighbourhoods of r = 1 "
            f"(width {SIDE:.1e}) for |A| <= {A_RANGE:g}: no slope and no kink at 1"
        ),
    )


KINK_STEPS = (1e-9, 1e-8)  # one-sided quotients of the float32 trace, evaluated in float64


def _kink(traced: _Traced, a: np.ndarray, tol) -> dict | None:
    """A confirmed slope or kink at r = 1 for one of the advantages `a`: the float32 trace's
    autodiff slope at 1, and its one-sided quotients over KINK_STEPS, in float64 arithmetic
    (fine enough to see an LPO network's flat zone of 1e-6 / slope, where float32 is not)."""
    ones = np.ones_like(a)
    at_one = traced.in_float64("value", ones, a)
    autodiff = traced.in_float64("d_r", ones, a)
    quotients = {}
    for side in (1.0, -1.0):
        quotients[side] = [
            side * (traced.in_float64("value", ones + side * h, a) - at_one) / h for h in KINK_STEPS
        ]
    allowed = tol.slope * (1.0 + np.abs(a))
    bad_autodiff = ~np.isfinite(autodiff) | (np.abs(autodiff) > allowed)
    kinked = {side: is_kinked(*q, KINK_STEPS, allowed) for side, q in quotients.items()}
    bad = bad_autodiff | kinked[1.0] | kinked[-1.0]
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    left, right = quotients[-1.0][0][i], quotients[1.0][0][i]
    if bad_autodiff[i]:
        what = f"its derivative in r at r=1, A={a[i]:.6g} is {autodiff[i]:.6g}"
    else:
        what = (
            f"it has a kink at r=1 for A={a[i]:.6g}: slope {left:.6g} from the left and "
            f"{right:.6g} from the right over steps of {KINK_STEPS[0]:g}, not shrinking"
        )
    return {
        "detail": f"a drift must have zero slope in r at r = 1, but as training computes it "
        f"(its float32 trace, in float64 arithmetic) {what}",
        "r": 1.0,
        "A": float(a[i]),
        "autodiff_slope": float(autodiff[i]),
        "left_slope": float(left),
        "right_slope": float(right),
        "step": KINK_STEPS[0],
    }


def _shape_free(jaxpr) -> str:
    return re.sub(r"\[\d+\]", "[n]", str(jaxpr))


def certify_drift(
    drift, sizes: tuple[int, ...], proof_function=None, excused=None
) -> list[ConditionProof]:
    """Each condition's verdict on the drift as training calls it at every length in
    `sizes`; where the drift computes the same thing at all of them (the usual case) it is
    proved once. `proof_function` (default: the drift) is what gets traced, e.g. an
    expression program's tree in place of its interpreter; `excused` is the finite
    condition's excuse for float32 overflow (drift.finite)."""
    tol = CERTIFIED
    proof_function = proof_function or drift
    groups: dict[str, _Traced] = {}
    for size in sorted(sizes):
        traced = _Traced(drift, proof_function, size)
        groups.setdefault(_shape_free(traced.jaxprs["value"]), traced)
    verdicts = []
    for prove in (_prove_finite, _prove_non_negative, _prove_zero_at_one, _prove_zero_slope):
        results = [prove(traced, tol, excused) for traced in groups.values()]
        verdicts.append(_worst(results))
    return verdicts


def _worst(results: list[ConditionProof]) -> ConditionProof:
    order = {Proof.VIOLATED: 0, Proof.UNPROVED: 1, Proof.PROVED: 2}
    worst = min(results, key=lambda p: order[p.verdict])
    groups = len(results)
    if groups == 1:
        return worst
    return ConditionProof(
        worst.condition,
        worst.verdict,
        f"{worst.detail} (the drift computes differently at {groups} call lengths; the worst)",
        sum(p.boxes for p in results),
        sum(p.seconds for p in results),
        worst.counterexample,
    )
