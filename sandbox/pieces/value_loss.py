"""Value losses: `value_loss(prediction, target)`, elementwise; the trainer averages it and
applies PPO's value clipping around it.

Valid: finite (values and gradients), and for every target uniquely minimised at
prediction = target. The conditions are defined once on a `Probe` and run thoroughly in the
sandbox (float64 JAX) and as the mutation proposer's pre-screen (numpy on expression trees),
on the same points: they are cheap.
"""

import dataclasses

import numpy as np

from sandbox.checks.report import CheckResult
from sandbox.pieces.base import (
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

TARGETS = np.concatenate([np.linspace(-100.0, 100.0, 41), [-1.0, -0.1, 0.0, 0.1, 1.0]])
OFFSETS = np.concatenate([-np.geomspace(1e-2, 200.0, 40), np.geomspace(1e-2, 200.0, 40)])
# how much higher than at the target a loss must be elsewhere, times (1 + |loss at target|)
GAP = 1e-12
# Errors up to which a value loss must stay finite in float32 (log-cosh overflows at ~89).
FLOAT32_ORDINARY_ERROR = 50.0

FINITE = Condition("finite", "non-finite")
MINIMUM = Condition("minimum_at_target", "minimum off target")


def finite(probe: Probe, excused=None) -> CheckResult:
    """`excused(prediction, target, derivative)`, if given, marks points where a non-finite
    number is the precision's range, not the loss's doing (the float32 pass)."""
    target, offset = grid(TARGETS, OFFSETS)
    prediction = target + offset
    values = probe.values(prediction, target)
    grads = probe.slope(prediction, target)
    for derivative, what, array in (
        (False, "value", values),
        (True, "gradient in the prediction", grads),
    ):
        bad = ~np.isfinite(array)
        if excused is not None and bad.any():
            bad[bad] = ~excused(prediction[bad], target[bad], derivative)
        if bad.any():
            i = int(np.argmax(bad))
            return CheckResult(
                FINITE.name,
                False,
                f"the {what} at prediction={prediction[i]:.6g}, target={target[i]:.6g} "
                f"is {array[i]}; a value loss must be finite",
                {
                    "prediction": float(prediction[i]),
                    "target": float(target[i]),
                    what.split()[0]: str(array[i]),
                },
            )
    return CheckResult(
        FINITE.name, True, f"finite values and gradients at {values.size} points, |target| <= 100"
    )


def minimum_at_target(probe: Probe) -> CheckResult:
    target, offset = grid(TARGETS, OFFSETS)
    at_target = probe.values(TARGETS, TARGETS)
    elsewhere = probe.values(target + offset, target)
    reference = np.repeat(at_target, OFFSETS.size)
    # The minimum must be at the target and unique: any other prediction scores strictly worse.
    gap = elsewhere - reference
    i = int(np.argmin(np.where(np.isfinite(gap), gap, np.inf)))
    if not gap[i] > GAP * (1.0 + abs(reference[i])):
        return CheckResult(
            MINIMUM.name,
            False,
            f"value_loss(prediction={target[i] + offset[i]:.6g}, target={target[i]:.6g}) = "
            f"{elsewhere[i]:.6g} is not above value_loss(target, target) = {reference[i]:.6g}; "
            "the loss must be smallest, uniquely, when the prediction equals the target",
            {
                "prediction": float(target[i] + offset[i]),
                "target": float(target[i]),
                "loss": float(elsewhere[i]),
                "loss_at_target": float(reference[i]),
            },
        )
    return CheckResult(
        MINIMUM.name, True, f"unique minimum at prediction = target for {TARGETS.size} targets"
    )


def check_value_loss(
    value_loss, filename: str = "candidate.py", *, sizes=None, proof_function=None
) -> list[CheckResult]:
    """The conditions in float64, then in float32 in calls of every length in `sizes`
    (default: every length training calls a value loss with), as training calls it. No
    certificate for value losses yet: `proof_function` is accepted and unused."""
    import jax

    from sandbox.checks.contract import describe_failure
    from sandbox.pieces.base import SizedProbe, call_sizes

    try:
        with jax.enable_x64(True):
            probe = JaxProbe(value_loss)
            results = [finite(probe), minimum_at_target(probe)]
        if not all(r.passed for r in results):
            return results

        def beyond_float32(prediction, target, derivative: bool):
            """A non-finite float32 number is the precision's range where float64's number
            is beyond it, or where the error is so large that an honest loss's intermediate
            (cosh of the error, say) overflows, and inf / inf follows in its gradient."""
            with jax.enable_x64(True):
                exact = (probe.slope if derivative else probe.values)(prediction, target)
            far = np.abs(prediction - target) > FLOAT32_ORDINARY_ERROR
            return far | (np.abs(exact) > np.finfo(np.float32).max)

        for size in sizes or call_sizes(PIECE):
            trained = SizedProbe(value_loss, size)
            as_trained = [finite(trained, beyond_float32), minimum_at_target(trained)]
            if not all(r.passed for r in as_trained):
                where = f"in float32 on arrays of {size} entries: "
                return [
                    r if r.passed else dataclasses.replace(r, detail=where + r.detail)
                    for r in as_trained
                ]
        return results
    except Exception as error:
        detail = describe_failure(error, filename)
        return [CheckResult(c.name, False, detail) for c in (FINITE, MINIMUM)]


def screen(probe: Probe) -> str | None:
    return first_failure(
        [(FINITE, lambda: finite(probe)), (MINIMUM, lambda: minimum_at_target(probe))]
    )


# Inside training the loss is float32: at its own target it may round above a neighbour's.
MONITOR_GAP = 1e-5


class ValueLossMonitor:
    """Each minibatch's value-loss call also evaluates a quarter of its targets against
    themselves: the loss of a prediction must never be below the loss at its target, and
    every loss must be finite. (The
    clipped second call of PPO's value clipping is not watched.)"""

    def call_sizes(self, minibatch: int) -> tuple[int, ...]:
        return (minibatch + max(1, minibatch // 4), minibatch)

    def noise_size(self, minibatch: int) -> int:
        return 0

    def probes(self, inputs, noise):
        _, target = inputs
        k = max(1, target.shape[0] // 4)  # a quarter of the minibatch's targets
        return target[:k], target[:k]

    def inspect(self, inputs, values, probe_inputs, probe_values):
        import jax.numpy as jnp

        k = probe_values.shape[0]
        prediction, target = inputs
        finite = jnp.isfinite(values)
        probed = finite[:k] & jnp.isfinite(probe_values)
        gap = values[:k] - probe_values
        score = jnp.where(probed, -gap - MONITOR_GAP * (1.0 + jnp.abs(probe_values)), -jnp.inf)
        i, j = jnp.argmax(score), jnp.argmax(~finite)
        return {
            FINITE.name: {
                "score": jnp.where(finite[j], -1.0, 1.0),
                "prediction": prediction[j],
                "target": target[j],
                "loss": values[j],
            },
            MINIMUM.name: {
                "score": score[i],
                "prediction": prediction[i],
                "target": target[i],
                "loss": values[i],
                "loss_at_target": probe_values[i],
            },
        }

    def describe(self, condition: str, f: dict[str, float], update: int) -> str:
        if condition == FINITE.name:
            return (
                f"non-finite during training: value_loss({f['prediction']:.4g}, "
                f"{f['target']:.4g}) = {f['loss']} at update {update}"
            )
        return (
            f"not minimal at the target during training: value_loss({f['prediction']:.4g}, "
            f"{f['target']:.4g}) = {f['loss']:.4g} < value_loss(target, target) = "
            f"{f['loss_at_target']:.4g} at update {update}"
        )


def _behaviour_inputs():
    import jax.numpy as jnp

    prediction = np.linspace(-4.0, 4.0, 17)
    target = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    p, t = np.meshgrid(prediction, target)
    return jnp.asarray(p.ravel(), jnp.float32), jnp.asarray(t.ravel(), jnp.float32)


def typical(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Critic predictions and their return targets, as a minibatch has them."""
    prediction = rng.normal(0.0, 10.0, n)
    return prediction, prediction + rng.normal(0.0, 1.0, n)


def behaviour(value_loss) -> np.ndarray:
    return np.asarray(value_loss(*_behaviour_inputs()), dtype=np.float64)


_fingerprint = grid(
    unique(np.linspace(-100, 100, 9), [-1, 0, 1]),
    unique(np.geomspace(1e-2, 200, 8), -np.geomspace(1e-2, 200, 8), 0),
)
_line = np.linspace(-100, 100, 21)

PIECE = Piece(
    kind="value_loss",
    plug_point=PlugPoint.VALUE_LOSS,
    contract=Contract.ELEMENTWISE,
    arity=2,
    default=("value_loss", "squared_error"),
    check=check_value_loss,
    behaviour=behaviour,
    evidence=(
        "The value-loss conditions (finite, uniquely minimal at the target) are checked "
        "numerically on a grid of targets in [-100, 100] and offsets from 1e-2 to 200: strong "
        "evidence, not a proof."
    ),
    screen=Screen(
        check=screen,
        fingerprint=(_fingerprint[0] + _fingerprint[1], _fingerprint[0]),
        anchor=(_line, _line),
    ),
    monitor=ValueLossMonitor(),
    typical=typical,
)
