"""Validity checks of the value_loss and optimizer tasks, with counterexamples."""

import pytest

from sandbox.checks.pipeline import check_candidate
from sandbox.tasks import load_task

VALUE_HEADER = (
    "import jax\nimport jax.numpy as jnp\n\n\n"
    "def value_loss(prediction, target):\n    p, t = prediction, target\n"
)


def check_value_loss(body):
    return check_candidate(load_task("value_loss"), VALUE_HEADER + f"    {body}\n")


@pytest.mark.parametrize(
    "body",
    [
        "return 0.5 * (p - t) ** 2",
        "return jnp.abs(p - t)",
        "return jnp.log(jnp.cosh(p - t))",
        "return (p - t) ** 2 + 1.0",  # an offset keeps the minimum where it is
        # asymmetric, still minimised at the target
        "return jnp.where(p > t, 2.0, 0.5) * (p - t) ** 2",
    ],
)
def test_valid_value_losses(body):
    report = check_value_loss(body)
    assert report.valid, [(c.name, c.detail) for c in report.failures]


@pytest.mark.parametrize(
    "body, condition",
    [
        ("return (p - t - 1.0) ** 2", "minimum_at_target"),
        ("return -((p - t) ** 2)", "minimum_at_target"),
        ("return jnp.zeros_like(p)", "minimum_at_target"),  # no unique minimum: nothing to learn
        ("return (p - t) ** 2 * jnp.log(t)", "finite"),
        ("return jnp.sum((p - t) ** 2)", "shape"),
    ],
)
def test_invalid_value_losses(body, condition):
    report = check_value_loss(body)
    failed = {c.name: c for c in report.failures}
    assert condition in failed, [(c.name, c.detail) for c in report.checks]
    if condition != "shape":
        assert failed[condition].counterexample


OPT_HEADER = (
    "import jax\nimport jax.numpy as jnp\nimport optax\n\n\n"
    "def make_optimizer(learning_rate, max_grad_norm):\n"
)


def check_optimizer(body):
    return check_candidate(
        load_task("optimizer"), OPT_HEADER + "".join(f"    {line}\n" for line in body.splitlines())
    )


@pytest.mark.parametrize(
    "body",
    [
        "return optax.chain(optax.clip_by_global_norm(max_grad_norm), "
        "optax.sgd(learning_rate, momentum=0.9))",
        "return optax.chain(optax.clip_by_global_norm(max_grad_norm), "
        "optax.adamw(learning_rate, weight_decay=1e-4))",
        "return optax.chain(optax.clip_by_global_norm(max_grad_norm), "
        "optax.rmsprop(learning_rate, eps=1e-5))",
    ],
)
def test_valid_optimizers(body):
    report = check_optimizer(body)
    assert report.valid, [(c.name, c.detail) for c in report.failures]


@pytest.mark.parametrize(
    "body, condition",
    [
        # No negation: climbs the loss.
        (
            "return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam(), "
            "optax.scale_by_learning_rate(learning_rate, flip_sign=False))",
            "descent",
        ),
        # eps = 0: zero gradients give 0/0.
        (
            "return optax.chain(optax.scale_by_adam(eps=0.0), "
            "optax.scale_by_learning_rate(learning_rate))",
            "finite",
        ),
        # Negative weight decay: parameters grow with no gradient at all.
        (
            "return optax.chain(optax.add_decayed_weights(-10.0), optax.sgd(learning_rate))",
            "zero_gradient",
        ),
        ("return 0.1", "structure"),
    ],
)
def test_invalid_optimizers(body, condition):
    report = check_optimizer(body)
    failed = {c.name: c for c in report.failures}
    assert condition in failed, [(c.name, c.detail) for c in report.checks]
