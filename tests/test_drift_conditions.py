"""Drift conditions: every valid family passes; every kind of violation is caught with a
counterexample that really violates the condition."""

import numpy as np
import pytest

from sandbox.checks.pipeline import check_candidate
from sandbox.tasks import load_task

HEADER = (
    "import jax\nimport jax.numpy as jnp\n\n\n"
    "def drift(ratio, advantage):\n    r, a = ratio, advantage\n"
)


def check(body: str):
    return check_candidate(
        load_task("mirror_drift"), HEADER + "".join(f"    {line}\n" for line in body.splitlines())
    )


VALID = {
    "kl_like": "return r - 1.0 - jnp.log(r)",
    "reverse_kl_like": "return r * jnp.log(r) - r + 1.0",
    "scaled_by_advantage": "return 0.5 * (r - 1.0) ** 2 * jnp.abs(a)",
    "steep_quadratic": "return 1e4 * (r - 1.0) ** 2 * (1.0 + a ** 2)",
    "dead_zone_hinge": "return jnp.maximum(jnp.abs(r - 1.0) - 0.2, 0.0) * jnp.abs(a)",
    "dead_zone_squared": "return jnp.maximum(jnp.abs(r - 1.0) - 0.1, 0.0) ** 2",
    "one_sided_dead_zone": "return jax.nn.relu(r - 1.3) * jnp.abs(a)",
    "ppo_written_differently": (
        "return jnp.where(a > 0, jax.nn.relu(r - 1.2) * a, jax.nn.relu(0.8 - r) * -a)"
    ),
    "log_ratio_squared": "return jnp.log(r) ** 2 * (1.0 + jnp.tanh(a))",
    "power_three_halves": "return jnp.abs(r - 1.0) ** 1.5",
    "asymmetric_by_sign": "return jnp.where(a >= 0, (r - 1.0) ** 2, 2.0 * jnp.log(r) ** 2)",
    # Finite everywhere, though float64 overflows to +inf for r beyond ~700: not a violation.
    "exponential_bregman": "return jnp.exp(r - 1.0) - r",
    "exponential_in_advantage": "return jnp.exp((r - 1.0) * a) - 1.0 - (r - 1.0) * a",
}


@pytest.mark.parametrize("name", VALID)
def test_valid_drift_passes(name):
    report = check(VALID[name])
    assert report.valid, [(c.name, c.detail) for c in report.failures]
    assert [c.name for c in report.checks] == [
        "static",
        "load",
        "shape",
        "gradient_path",
        "finite",
        "non_negative",
        "zero_at_one",
        "zero_slope_at_one",
        "derivative_of_values",
    ]


@pytest.mark.parametrize("name", ["ppo", "dpo", "zero"])
def test_baseline_drifts_pass(name):
    task = load_task("mirror_drift")
    assert check_candidate(task, task.baseline_source(name)).valid


def _evaluate(body, r, a):
    namespace = {}
    exec(HEADER + "".join(f"    {line}\n" for line in body.splitlines()), namespace)
    return float(np.asarray(namespace["drift"](np.float64(r), np.float64(a))))


INVALID = {
    # name: (body, the check that must fail)
    "negative_far_from_one": (
        "return (r - 1.0) ** 2 - 0.01 * jnp.maximum(r - 5.0, 0.0) ** 3",
        "non_negative",
    ),
    "negative_for_small_ratio": (
        "return (r - 1.0) ** 2 - 10.0 * jnp.maximum(0.2 - r, 0.0)",
        "non_negative",
    ),
    "negative_for_large_advantage": (
        "return (r - 1.0) ** 2 * (1.0 - 0.02 * a ** 2)",
        "non_negative",
    ),
    "signed_surrogate": ("return (r - 1.0) * a", "non_negative"),
    "odd_cubic_term": ("return (r - 1.0) ** 2 + 0.5 * (r - 1.0) ** 3 * a", "non_negative"),
    "abs_kink": ("return jnp.abs(r - 1.0)", "zero_slope_at_one"),
    "relu_kink_autodiff_blind": ("return jax.nn.relu((r - 1.0) * a)", "zero_slope_at_one"),
    "small_kink": ("return 0.01 * jnp.abs(jnp.log(r))", "zero_slope_at_one"),
    "one_sided_kink": ("return jnp.where(r > 1.0, r - 1.0, (r - 1.0) ** 2)", "zero_slope_at_one"),
    "linear_term": ("return (r - 1.0) ** 2 + 0.1 * (r - 1.0) * a ** 2", "zero_slope_at_one"),
    "offset": ("return (r - 1.0) ** 2 + 1e-3", "zero_at_one"),
    "advantage_offset": ("return (r - 1.0) ** 2 + 0.1 * a ** 2", "zero_at_one"),
    "nan_region": ("return jnp.sqrt(r - 0.5) * (r - 1.0) ** 2", "finite"),
    "log_of_advantage": ("return (r - 1.0) ** 2 * jnp.log(a)", "finite"),
    "infinite_outside_a_band": (
        "return jnp.where(jnp.abs(r - 1.0) > 0.5, jnp.inf, (r - 1.0) ** 2)",
        "finite",
    ),
    "overflows_at_ordinary_ratios": ("return jnp.exp(1000.0 * (r - 1.0) ** 2) - 1.0", "finite"),
    "nan_gradient_from_where": (
        "return jnp.where(r > 0.01, (r - 1.0) ** 2, jnp.sqrt(r - 0.01))",
        "finite",
    ),
}


@pytest.mark.parametrize("name", INVALID)
def test_invalid_drift_fails_its_condition_with_a_true_counterexample(name):
    body, condition = INVALID[name]
    report = check(body)
    assert not report.valid
    failed = {c.name: c for c in report.failures}
    assert condition in failed, [(c.name, c.detail) for c in report.checks]
    example = failed[condition].counterexample
    assert example and "r" in example and "A" in example
    if condition == "non_negative":
        assert _evaluate(body, example["r"], example["A"]) < 0
    if condition == "zero_at_one":
        assert abs(_evaluate(body, 1.0, example["A"])) > 1e-6
    if condition == "zero_slope_at_one":
        slopes = [example["autodiff_slope"], example["left_slope"], example["right_slope"]]
        assert max(abs(s) for s in slopes) > 1e-4
    assert "r=" in failed[condition].detail  # plain words with the numbers


CONTRACT = {
    "reduced_shape": "return jnp.mean((r - 1.0) ** 2)",
    "broadcast_shape": "return (r[:, None] - 1.0) ** 2 * a[None, :] ** 2",
    "mixes_the_batch": "return (r - 1.0) ** 2 * jnp.mean(a ** 2)",
    "python_branch_on_tracer": "if r > 1.0:\n    return (r - 1.0) ** 2\nreturn 0.0 * r",
    "python_float_of_tracer": "return (r - 1.0) ** 2 * float(jnp.max(a))",
    "integer_output": "return (r > 2.0).astype(jnp.int32)",
    "returns_a_tuple": "return (r - 1.0) ** 2, a",
}


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_violations_are_reported_not_crashes(name):
    report = check(CONTRACT[name])
    assert not report.valid
    assert report.checks[-1].name == "shape" and not report.checks[-1].passed
    if name.startswith("python_"):
        assert "control flow" in report.checks[-1].detail and "line" in report.checks[-1].detail
