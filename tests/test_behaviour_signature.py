"""Behaviour signatures: the same function written differently is caught, a different one is
not, and the cascade stops a behavioural duplicate in the sandbox before any training."""

import pytest

from harness.cascade import evaluate_candidate
from sandbox.candidate import load_entry_point
from sandbox.checks.signature import behaviour_signature
from sandbox.pieces import get_piece
from sandbox.tasks import load_baseline, load_task

SQUARE = (
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    return 0.5 * jnp.square(ratio - 1.0)\n"
)
PRODUCT = (
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    d = ratio - 1.0\n    return d * d / 2.0 + 0.0 * advantage\n"
)


def signature(source: str, entry_point: str = "drift", kind: str = "drift") -> str:
    return behaviour_signature(get_piece(kind), load_entry_point(source, entry_point))


def test_equal_functions_share_a_signature_and_different_ones_do_not():
    assert signature(SQUARE) == signature(PRODUCT)
    assert signature(SQUARE) != signature(SQUARE.replace("0.5", "0.6"))
    ppo, dpo = load_baseline("mirror_drift", "ppo"), load_baseline("mirror_drift", "dpo")
    assert behaviour_signature(get_piece("drift"), ppo) != behaviour_signature(
        get_piece("drift"), dpo
    )
    huber, squared = (
        load_baseline("value_loss", "huber"),
        load_baseline("value_loss", "squared_error"),
    )
    assert behaviour_signature(get_piece("value_loss"), huber) != behaviour_signature(
        get_piece("value_loss"), squared
    )
    adam = load_baseline("optimizer", "adam")
    assert behaviour_signature(get_piece("optimizer"), adam) == behaviour_signature(
        get_piece("optimizer"), adam
    )


@pytest.mark.slow
def test_the_cascade_stops_a_behavioural_duplicate_before_training():
    claimed = []

    def claim(sig):
        claimed.append(sig)
        return 41  # the archive says candidate 41 already behaves like this

    evaluation = evaluate_candidate(
        "mirror_drift", PRODUCT, "smoke", sandbox="process", claim_signature=claim
    )
    assert evaluation.status == "duplicate" and evaluation.duplicate_of == 41
    assert claimed == [signature(SQUARE)]
    assert "full" not in {s.name for s in evaluation.stages if s.status == "ok"}
    assert evaluation.fitness is None and evaluation.seconds < 120


@pytest.mark.slow
def test_a_cancelled_evaluation_has_no_verdict():
    calls = []
    evaluation = evaluate_candidate(
        "mirror_drift",
        load_task("mirror_drift").baseline_source("ppo"),
        "smoke",
        sandbox="process",
        cancelled=lambda: calls.append(1) or len(calls) > 2,
    )
    assert (
        evaluation.status == "cancelled" and evaluation.fitness is None and evaluation.stages == []
    )
