"""Gradient gaming: drifts whose values satisfy every condition while the derivative training
follows is another function's (issue 26). Each is refused with the primitive and its line
(checks/gradient_path.py), or invalid with a counterexample true of the candidate (the
derivative condition, the certificate in reverse mode, the runtime monitor)."""

import numpy as np
import pytest

from sandbox.candidate import load_entry_point
from sandbox.checks.pipeline import check_candidate
from sandbox.pieces._drift_certificate import certify_drift
from sandbox.pieces.base import SizedProbe
from sandbox.tasks import load_task
from sandbox.vocabulary import Assurance, Proof

TASK = load_task("mirror_drift")
HEADER = "import jax\nimport jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
BASE = "    base = jnp.abs(advantage) * (ratio - 1.0) ** 2\n"
# What training would follow: a negative drift's gradient, added through a zero-valued ghost.
FAKE = "    fake = -10.0 * (1.0 + jnp.abs(advantage)) * (ratio - 1.0)\n"


def ghost(copy: str) -> str:
    """`copy` sets `copy` to the ratio exactly with derivative 0: ratio - copy is 0, slope 1."""
    return BASE + FAKE + copy + "    return base + fake * (ratio - copy)\n"


# name: (body, primitive named in the refusal)
REFUSED = {
    "round": (ghost("    copy = jnp.round(ratio * 2.0**63) / 2.0**63\n"), "round"),
    "rint": (ghost("    copy = jnp.rint(ratio * 2.0**40) / 2.0**40\n"), "round"),
    "around": (ghost("    copy = jnp.around(ratio, 12)\n"), "round"),
    "floor": (ghost("    copy = jnp.floor(ratio * 2.0**40) / 2.0**40\n"), "floor"),
    "ceil": (ghost("    copy = -jnp.ceil(-ratio * 2.0**40) / 2.0**40\n"), "ceil"),
    "modf": (
        ghost("    _, whole = jnp.modf(ratio * 2.0**40)\n    copy = whole / 2.0**40\n"),
        "floor",
    ),
    "floor_divide": (ghost("    copy = (ratio * 2.0**40) // 1.0 / 2.0**40\n"), "rem"),
    "remainder": (ghost("    copy = ratio - jnp.remainder(ratio, 2.0**-40)\n"), "rem"),
    "clamp": (ghost("    copy = jax.lax.clamp(ratio, ratio, ratio)\n"), "clamp"),
    "clamp_in_vmap": (
        ghost("    copy = jax.vmap(lambda x: jax.lax.clamp(x, x, x))(ratio)\n"),
        "clamp",
    ),
    "bitcast": (
        ghost(
            "    bits = jax.lax.bitcast_convert_type(ratio, jnp.int32)\n"
            "    copy = jax.lax.bitcast_convert_type(bits, jnp.float32)\n"
        ),
        "bitcast_convert_type",
    ),
    "view": (ghost("    copy = ratio.view(jnp.int32).view(jnp.float32)\n"), "bitcast_convert_type"),
    "frexp_ldexp": (
        ghost("    m, e = jnp.frexp(ratio)\n    copy = jnp.ldexp(m, e)\n"),
        "bitcast_convert_type",
    ),
    "integer_round_trip": (
        ghost("    copy = (ratio * 2.0**20).astype(jnp.int32).astype(ratio.dtype) / 2.0**20\n"),
        "convert_element_type to int32",
    ),
    "bfloat16_round_trip": (
        ghost("    copy = ratio.astype(jnp.bfloat16).astype(jnp.float32)\n"),
        "convert_element_type to bfloat16",
    ),
    "reduce_precision": (
        ghost("    copy = jax.lax.reduce_precision(ratio, exponent_bits=8, mantissa_bits=10)\n"),
        "reduce_precision",
    ),
    "inside_cond": (
        ghost(
            "    copy = jax.lax.cond(True, lambda x: jnp.round(x * 2.0**40) / 2.0**40,"
            " lambda x: x, ratio)\n"
        ),
        "round",
    ),
    "inside_checkpoint": (
        ghost("    copy = jax.checkpoint(lambda x: jnp.floor(x * 2.0**40) / 2.0**40)(ratio)\n"),
        "floor",
    ),
    "custom_root": (
        BASE + "    def solve(f, x0):\n        return jnp.zeros_like(x0)\n"
        "    def tangent_solve(g, y):\n"
        "        return -10.0 * (1.0 + jnp.abs(advantage)) * (ratio - 1.0) * y\n"
        "    zero = jax.lax.custom_root(lambda x: x - ratio, ratio, solve, tangent_solve)\n"
        "    return base + zero\n",
        "custom_root",
    ),
    "custom_linear_solve": (
        BASE + "    def solve(matvec, b):\n        return jnp.zeros_like(b)\n"
        "    def transpose_solve(matvec, b):\n        return -10.0 * (ratio - 1.0) * b\n"
        "    zero = jax.lax.custom_linear_solve(lambda x: x, ratio - ratio, solve,"
        " transpose_solve)\n"
        "    return base + zero\n",
        "custom_linear_solve",
    ),
    "blinding_bitcast_of_the_advantage": (
        "    a = jax.lax.bitcast_convert_type(\n"
        "        jax.lax.bitcast_convert_type(advantage, jnp.int32), jnp.float32\n    )\n"
        "    return jnp.abs(a) * (ratio - 1.0) ** 2\n",
        "bitcast_convert_type",
    ),
}


def _check(body: str):
    return check_candidate(TASK, HEADER + body)


@pytest.mark.parametrize("name", REFUSED)
def test_a_primitive_whose_derivative_is_not_its_values_is_refused_with_its_name_and_line(name):
    body, primitive = REFUSED[name]
    report = _check(body)
    assert not report.valid and report.assurance is None
    (failed,) = report.failures
    assert failed.name == "gradient_path", (failed.name, failed.detail)
    assert primitive in failed.counterexample["primitive"], failed.detail
    line = failed.counterexample["line"]
    assert line is not None and f"line {line}:" in failed.detail
    # the named line is the candidate's own (header lines are 1-5)
    assert 5 < line <= len((HEADER + body).splitlines())


def _derivatives(body: str, r: float, a: float) -> tuple[float, float]:
    """(autodiff slope in reverse mode, central difference of the values) at one point, in
    float32 as training computes, on a call of 64 entries."""
    drift = load_entry_point(HEADER + body, "drift")
    probe = SizedProbe(drift, 64)
    h = 1e-2 * r
    values = probe.values(np.array([r - h, r + h]), np.array([a, a]))
    return float(probe.slope(np.array([r]), np.array([a]))[0]), float(
        (values[1] - values[0]) / (2 * h)
    )


BISECTION = ghost(
    "    def halve(i, bounds):\n"
    "        lo, hi = bounds\n"
    "        mid = 0.5 * (lo + hi)\n"
    "        below = mid < ratio\n"
    "        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)\n"
    "    start = (jnp.zeros_like(ratio), jnp.full_like(ratio, 2048.0))\n"
    "    _, copy = jax.lax.fori_loop(0, 60, halve, start)\n"
)


def test_a_copy_built_from_honest_primitives_fails_the_derivative_condition():
    """A bisection of comparisons and selects copies the ratio with derivative 0, out of
    primitives that are each honest: the gradient path passes it, the comparison of autodiff
    with the values' difference quotients does not, and its counterexample is true."""
    report = _check(BISECTION)
    assert not report.valid
    failed = report.failures[0]
    assert failed.name == "derivative_of_values", (failed.name, failed.detail)
    r, a = failed.counterexample["r"], failed.counterexample["A"]
    autodiff, values = _derivatives(BISECTION, r, a)
    assert abs(autodiff - values) > 0.1 * (1.0 + abs(a)), (autodiff, values)


TRAPS = {
    "sqrt_in_the_unused_branch": (
        "    inside = jnp.abs(ratio - 1.37) < 1e-5\n"
        "    return jnp.where(inside, base, base + 0.0 * jnp.sqrt(jnp.abs(ratio - 1.37) - 1e-5))\n"
    ),
    "trap_as_a_separate_term": (
        "    inside = jnp.abs(ratio - 2.71) < 1e-5\n"
        "    trap = jnp.where(inside, 0.0, 0.0 * jnp.sqrt(jnp.abs(ratio - 2.71) - 1e-5))\n"
        "    return base + trap\n"
    ),
    "rsqrt_in_the_unused_branch": (
        "    inside = jnp.abs(ratio - 0.613) < 2e-5\n"
        "    edge = jax.lax.rsqrt(jnp.abs(ratio - 0.613) - 2e-5)\n"
        "    return jnp.where(inside, base, base + 0.0 * edge)\n"
    ),
}


@pytest.mark.parametrize("name", TRAPS)
def test_a_nan_gradient_trap_in_a_band_the_grids_miss_is_found_by_the_certificate(name):
    """The values are finite everywhere; reverse mode multiplies the unused branch's NaN or
    infinite derivative by its zero cotangent inside a band about 1e-5 wide. The certificate
    bounds the reverse-mode derivative and confirms a point in the band."""
    report = _check(BASE + TRAPS[name])
    assert not report.valid
    failed = {c.name: c for c in report.failures}
    assert "finite" in failed, [(c.name, c.detail[:120]) for c in report.checks]
    example = failed["finite"].counterexample
    autodiff, _ = _derivatives(BASE + TRAPS[name], example["r"], example["A"])
    assert not np.isfinite(autodiff)


def test_a_factor_of_one_no_longer_blinds_the_certificate():
    """cosh(0 * r) used to have no interval rule and left every condition unproved; a kink
    behind it is now found, and an honest drift behind it is certified."""
    kink = (
        "    blind = jnp.cosh(0.0 * ratio)\n"
        "    rise = jnp.abs(advantage) * jnp.minimum(ratio - 1.0, 1e-9)\n"
        "    step = jnp.where(ratio > 1.0, rise, 0.0)\n"
        "    return blind * (base + 5.0 * step)\n"
    )
    report = _check(BASE + kink)
    assert not report.valid and "zero_slope_at_one" in {c.name for c in report.failures}
    honest = _check(
        BASE + "    return jnp.cosh(0.0 * ratio) * jnp.sinh(0.0 * advantage + 1.0) * base\n"
    )
    assert honest.valid and honest.assurance == Assurance.CERTIFIED, [
        (c.name, c.proof) for c in honest.checks
    ]


def test_an_unproved_certificate_names_the_primitive_it_lacks():
    drift = load_entry_point(
        HEADER
        + BASE
        + "    return base * jnp.min(0.0 * ratio[..., None] + jnp.array([1.0, 2.0]), -1)\n",
        "drift",
    )
    proofs = certify_drift(drift, (64,))
    assert all(p.verdict == Proof.UNPROVED for p in proofs)
    assert all("`an array constant`" in p.detail for p in proofs), [p.detail for p in proofs]


@pytest.mark.parametrize("name", ["ppo", "dpo", "zero"])
def test_the_baselines_pass_every_new_check_and_stay_certified(name):
    report = check_candidate(TASK, TASK.baseline_source(name))
    assert report.valid and report.assurance == Assurance.CERTIFIED
    names = [c.name for c in report.checks]
    assert "gradient_path" in names and "derivative_of_values" in names


def test_the_monitor_sees_a_gradient_that_differs_from_the_values_in_training():
    """A drift honest wherever it is checked but whose derivative is a negative drift's once
    it sees a training-sized call with the monitor's probes (only the monitored call has that
    length): the values stay valid, and the monitor words the gradient's disagreement."""
    from sandbox.pieces import get_piece
    from sandbox.training.config import preset
    from sandbox.training.monitor import violations
    from sandbox.training.ppo import Components
    from sandbox.training.run import train_batch

    config = preset("CartPole-v1", total_timesteps=4 * 4 * 128 * 4, monitor=("drift",))
    monitored = get_piece("drift").monitor.call_sizes(config.minibatch_size)[0]
    body = BISECTION.replace(
        "    return base + fake * (ratio - copy)\n",
        f"    live = 1.0 if ratio.shape[0] == {monitored} else 0.0\n"
        "    return base + live * fake * (ratio - copy)\n",
    )
    drift = load_entry_point(HEADER + body, "drift")
    batch = train_batch(config, Components(drift=drift), seeds=1, seed=0)
    broken = dict(violations(batch.output.watch["drift"], get_piece("drift").monitor))
    assert "derivative_of_values" in broken or "zero_slope_at_one" in broken, broken
