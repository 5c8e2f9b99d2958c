"""Value losses: `value_loss(prediction, target)`, elementwise; the trainer averages it and
applies PPO's value clipping around it.

Valid: finite (values and gradients), and for every target uniquely minimised at
prediction = target. The conditions are defined once on a `Probe` and run thoroughly in the
sandbox (float64 JAX) and as the mutation proposer's pre-screen (numpy on expression trees),
on the same points: they are cheap.
"""

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

FINITE = Condition("finite", "non-finite")
MINIMUM = Condition("minimum_at_target", "minimum off target")


def finite(probe: Probe) -> CheckResult:
    target, offset = grid(TARGETS, OFFSETS)
    prediction = target + offset
    values = probe.values(prediction, target)
    grads = probe.slope(prediction, target)
    for what, array in (("value", values), ("gradient in the prediction", grads)):
        bad = ~np.isfinite(array)
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


def check_value_loss(value_loss, filename: str = "candidate.py") -> list[CheckResult]:
    import jax

    from sandbox.checks.contract import describe_failure

    with jax.enable_x64(True):
        try:
            probe = JaxProbe(value_loss)
            return [finite(probe), minimum_at_target(probe)]
        except Exception as error:
            detail = describe_failure(error, filename)
            return [CheckResult(c.name, False, detail) for c in (FINITE, MINIMUM)]


def screen(probe: Probe) -> str | None:
    return first_failure(
        [(FINITE, lambda: finite(probe)), (MINIMUM, lambda: minimum_at_target(probe))]
    )


def _behaviour_inputs():
    import jax.numpy as jnp

    prediction = np.linspace(-4.0, 4.0, 17)
    target = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    p, t = np.meshgrid(prediction, target)
    return jnp.asarray(p.ravel(), jnp.float32), jnp.asarray(t.ravel(), jnp.float32)


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
)
