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
import hashlib

import numpy as np

from sandbox.checks.report import CheckResult
from sandbox.pieces._drift_conditions import (
    CONDITIONS,
    DERIVATIVE,
    F32_EPS,
    FINITE,
    FLOAT32_MAX,
    FLOAT32_POINTS,
    NEAR_ONE,
    NON_NEGATIVE,
    R_MAX,
    R_MIN,
    SANDBOX_POINTS,
    TOLERANCES,
    ZERO_AT_ONE,
    ZERO_SLOPE,
    Points,
    all_results,
    descent_search,
    finite,
    is_kinked,
    non_negative,
    zero_at_one,
    zero_slope,
)
from sandbox.pieces.base import (
    OTHER_SIZES,
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
            results = all_results(
                probe, SANDBOX_POINTS, TOLERANCES["float64"], descent_search(probe.function)
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
            as_trained = all_results(
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
    return all_results(
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
        kinked = is_kinked(q_small, q_large, (1.0, MONITOR_STEP_RATIO), allowed, xp=jnp)
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
