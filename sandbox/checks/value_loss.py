"""Validity of a value loss: finite, and for every target uniquely minimised at prediction = target."""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.checks.contract import describe_failure
from sandbox.checks.report import CheckResult

TARGETS = np.concatenate([np.linspace(-100.0, 100.0, 41), [-1.0, -0.1, 0.0, 0.1, 1.0]])
OFFSETS = np.concatenate([-np.geomspace(1e-2, 200.0, 40), np.geomspace(1e-2, 200.0, 40)])


def check_value_loss(value_loss, filename: str = "candidate.py") -> list[CheckResult]:
    with jax.enable_x64(True):
        try:
            return [_check_finite(value_loss), _check_minimum(value_loss)]
        except Exception as error:
            detail = describe_failure(error, filename)
            return [CheckResult(n, False, detail) for n in ("finite", "minimum_at_target")]


def _evaluate(fn, prediction, target):
    return np.asarray(jax.jit(fn)(jnp.asarray(prediction, jnp.float64), jnp.asarray(target, jnp.float64)))


def _check_finite(value_loss):
    T, O = (x.ravel() for x in np.meshgrid(TARGETS, OFFSETS, indexing="ij"))
    prediction = T + O
    values = _evaluate(value_loss, prediction, T)
    grads = np.asarray(jax.jit(jax.vmap(jax.grad(lambda p, t: value_loss(p[None], t[None])[0])))(
        jnp.asarray(prediction), jnp.asarray(T)))
    for what, array in (("value", values), ("gradient in the prediction", grads)):
        bad = ~np.isfinite(array)
        if bad.any():
            i = int(np.argmax(bad))
            return CheckResult(
                "finite", False,
                f"the {what} at prediction={prediction[i]:.6g}, target={T[i]:.6g} is {array[i]}; a value loss must be finite",
                {"prediction": float(prediction[i]), "target": float(T[i]), what.split()[0]: str(array[i])},
            )
    return CheckResult("finite", True, f"finite values and gradients at {values.size} points, |target| <= 100")


def _check_minimum(value_loss):
    T, O = (x.ravel() for x in np.meshgrid(TARGETS, OFFSETS, indexing="ij"))
    at_target = _evaluate(value_loss, TARGETS, TARGETS)
    elsewhere = _evaluate(value_loss, T + O, T)
    reference = np.repeat(at_target, OFFSETS.size)
    # The minimum must be at the target and unique: any other prediction scores strictly worse.
    gap = elsewhere - reference
    i = int(np.argmin(np.where(np.isfinite(gap), gap, np.inf)))
    if not gap[i] > 1e-12 * (1.0 + abs(reference[i])):
        return CheckResult(
            "minimum_at_target", False,
            f"value_loss(prediction={T[i] + O[i]:.6g}, target={T[i]:.6g}) = {elsewhere[i]:.6g} is not above "
            f"value_loss(target, target) = {reference[i]:.6g}; the loss must be smallest, uniquely, when "
            "the prediction equals the target",
            {"prediction": float(T[i] + O[i]), "target": float(T[i]), "loss": float(elsewhere[i]),
             "loss_at_target": float(reference[i])},
        )
    return CheckResult("minimum_at_target", True, f"unique minimum at prediction = target for {TARGETS.size} targets")
