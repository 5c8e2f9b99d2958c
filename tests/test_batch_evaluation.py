"""Batched evaluation (`evaluate_batch`, process backend): members of one sandbox run get
the verdicts and numbers they get alone, whatever else is in the batch."""

import pytest

from sandbox.cascade import evaluate_batch, evaluate_candidate
from sandbox.tasks import load_task
from tests.test_hostile_candidates import HOSTILE, LIMITS

TASK = load_task("mirror_drift")
DPO = TASK.baseline_source("dpo")
EVAL_SEED = 1234  # the trusted side fixes it here so that two scorer runs are comparable


def numbers(evaluation):
    """Everything a result says about training and scoring, per environment."""
    return {
        env: (entry["returns"], entry["learning_curve"])
        for part in ("meta_train", "meta_test")
        for env, entry in evaluation.per_env[part].items()
    }


@pytest.fixture(scope="module")
def alone():
    result = evaluate_candidate(
        "mirror_drift", DPO, "smoke", sandbox="process", eval_seed=EVAL_SEED
    )
    assert result.status == "ok", result.stages
    return result


def test_a_member_scores_in_a_batch_what_it_scores_alone(alone):
    ppo = TASK.baseline_source("ppo")
    quadratic = "def drift(ratio, advantage):\n    return 0.5 * (ratio - 1.0) ** 2\n"
    batch = evaluate_batch(
        "mirror_drift", [ppo, quadratic, DPO], "smoke", sandbox="process", eval_seed=EVAL_SEED
    )
    assert [e.status for e in batch] == ["ok", "ok", "ok"]
    assert numbers(batch[2]) == numbers(alone)  # same seeds: the same floats, not just close
    assert batch[2].fitness == alone.fitness
    assert numbers(batch[0]) != numbers(batch[2])  # and the members really differ
    smoke = next(s for s in batch[2].stages if s.name == "smoke")
    assert "one program for 3" in smoke.detail
    # Each keeps its own log lines: the others' tags never show.
    assert "[member" not in batch[0].log_tail and "trained CartPole-v1" in batch[0].log_tail


MIXED = [
    "reads_env_vars",  # rejected before the sandbox
    "system_exit",  # ends the shared process in its trace
    "infinite_loop",  # hangs the shared process: the batch is split
    "memory_bomb",
    "nan_output",
    "python_branch",
    "recursion",
    "explodes_in_training",  # NaN only once training runs, inside the shared program
]


def test_hostile_members_do_not_touch_the_others(alone):
    """Members of the hostile suite mixed into one batch with the DPO baseline: each gets
    the verdict it gets alone, and DPO gets exactly its result alone."""
    names = [n for n in MIXED if n in HOSTILE]
    sources = [HOSTILE[n][0] for n in names]
    batch = evaluate_batch(
        "mirror_drift",
        [*sources[:4], DPO, *sources[4:]],
        "smoke",
        sandbox="process",
        stage_seconds=LIMITS,
        eval_seed=EVAL_SEED,
    )
    dpo = batch.pop(4)
    got = {n: (e.status, e.fitness) for n, e in zip(names, batch, strict=True)}
    assert got == {n: (HOSTILE[n][1], None) for n in names}, [
        (n, e.status, [(s.name, s.status, s.detail[:120]) for s in e.stages])
        for n, e in zip(names, batch, strict=True)
    ]
    assert dpo.status == "ok" and numbers(dpo) == numbers(alone)
