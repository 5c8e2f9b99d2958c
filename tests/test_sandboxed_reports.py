"""What a sandboxed check or training run writes is read as untrusted data: the trusted
side re-derives the verdict and refuses anything the sandboxed code does not write."""

import json

import pytest

from harness.check import MalformedReport, parse_report
from harness.train import MalformedResult, TrainingFailed, parse_result
from sandbox.checks.pipeline import static_check
from sandbox.checks.report import CheckReport, CheckResult
from sandbox.training.plan import TrainRequest
from sandbox.vocabulary import Status

STATIC = static_check("def drift(r, a):\n    return r\n")


def record(name, passed=True):
    return {"name": name, "passed": passed, "detail": "d", "counterexample": None, "proof": None}


def report(*records, valid=None, assurance="passed sampling"):
    checks = [record("static"), record("load"), *records]
    if valid is None:
        valid = all(c["passed"] for c in checks)
    return json.dumps({"valid": valid, "assurance": assurance if valid else None, "checks": checks})


def test_a_well_formed_report_keeps_the_trusted_static_record():
    """The sandbox's own static record is replaced by the trusted side's."""
    parsed = parse_report(report(record("finite")).encode(), STATIC)
    assert parsed.valid and parsed.checks[0] is STATIC
    assert [c.name for c in parsed.checks] == ["static", "load", "finite"]


FORGED = {
    "valid claimed over a failed check": report(record("finite", False), valid=True),
    "certified claimed with no proof": report(record("finite"), assurance="certified"),
    "no load record": json.dumps(
        {"valid": True, "assurance": "passed sampling", "checks": [record("static"), record("x")]}
    ),
    "a check named twice": report(record("finite"), record("finite")),
    "passed as a string": report({**record("finite"), "passed": "true"}),
    "an extra field": report({**record("finite"), "verdict": "ok"}),
    "a name with markup": report(record("[red]finite")),
    "a proof without a verdict": report({**record("finite"), "proof": {"boxes": 1}}),
    "a huge detail": report({**record("finite"), "detail": "x" * 20_000}),
    "not JSON": "{",
    "not an object": "[]",
}


@pytest.mark.parametrize("name", FORGED)
def test_a_forged_or_malformed_report_is_refused(name):
    """A report whose verdict does not follow from its records, or whose records are not
    what the pipeline writes, is never believed."""
    with pytest.raises(MalformedReport):
        parse_report(FORGED[name].encode(), STATIC)


def test_an_invalid_report_stays_invalid():
    parsed = parse_report(report(record("finite", False)).encode(), STATIC)
    assert not parsed.valid and parsed.to_dict()["assurance"] is None
    assert parsed.failures == [CheckResult("finite", False, "d")]
    assert isinstance(parsed, CheckReport)


PLAN = TrainRequest(seeds=2, timesteps=1024, learning_rates=(1e-3,)).plan()
UPDATES = PLAN.config.num_updates


def result(**changes):
    data = {
        "learning_rates": [1e-3],
        "final_returns": [[10.0, 20.0]],
        "learning_curves": [[None] + [1.0] * (UPDATES - 1)],
        "compile_seconds": 1.0,
        "train_seconds": 0.5,
        "eval_seconds": 0.1,
    }
    return json.dumps({**data, **changes}).encode()


def test_training_returns_are_checked_against_the_trusted_plan():
    """Returns come back as the plan shapes them, and are summarised here."""
    returns = parse_result(result(), PLAN)
    (summary,) = returns.summaries(PLAN)
    assert summary.final_returns == [10.0, 20.0] and summary.learning_curve[0] is None
    assert returns.env_steps(PLAN) == PLAN.config.env_steps * 2

    for bad in (
        result(learning_rates=[3e-4]),
        result(final_returns=[[10.0]]),
        result(final_returns=[[10.0, float("nan")]]),
        result(final_returns=[[10.0, True]]),
        result(learning_curves=[[1.0]]),
        result(train_seconds=0),
        json.dumps({"error": "ok", "detail": "x"}).encode(),
    ):
        with pytest.raises(MalformedResult):
            parse_result(bad, PLAN)


def test_a_reported_contract_failure_is_the_candidate_verdict():
    data = json.dumps({"error": "invalid", "detail": "not elementwise"}).encode()
    with pytest.raises(TrainingFailed) as failed:
        parse_result(data, PLAN)
    assert failed.value.status == Status.INVALID and "elementwise" in str(failed.value)
