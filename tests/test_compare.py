"""`scientist compare` end to end: a real ES campaign (2 generations at the smoke budget)
plus, archived directly in a second campaign, an LLM-written, a GP-proposed and a
distilled drift with their search-time scores. The LLM, mutation and distillation searches
themselves are covered end to end by test_campaign_llm, test_campaign and test_distill; here
only their results are needed. compare re-trains all six rows for real on 4 fresh blocks of
seeds (8 seeds, trained in one run per batch), each batch as a task on a Ray cluster it starts
on this machine (`--executor ray`), and prints one table. Slow: about 5 minutes on 2 CPU
cores."""

import json
import random
import subprocess
import sys

import pytest

from archive import writes
from archive.db import open_engine, transaction
from archive.schema import Campaign
from harness.cascade import Evaluation
from sandbox.tasks import load_task
from scientist.proposers.base import CallRecord, ParentView, ProposalRequest
from scientist.proposers.mutation import MutationProposer

pytestmark = pytest.mark.slow

LLM_DRIFT = (
    "import jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
    "    return 0.5 * jnp.square(jnp.log(ratio)) * (1.0 + jnp.abs(advantage))\n"
)
DISTILLED = (
    load_task("mirror_drift")
    .baseline_source("dpo")
    .replace("alpha, beta = 2.0, 0.6", "alpha, beta = 1.8, 0.5")
)


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "scientist.cli", *args], capture_output=True, text=True, timeout=900
    )


def test_compare_prints_every_row_with_fresh_seed_scores_and_costs(tmp_path):
    db = f"sqlite:///{tmp_path}/archive.db"
    es = cli(
        "es",
        "--task",
        "mirror_drift",
        "--budget",
        "smoke",
        "--population",
        "4",
        "--generations",
        "2",
        "--seeds",
        "1",
        "--sandbox",
        "process",
        "--name",
        "es1",
        "--db",
        db,
    )
    assert es.returncode == 0, es.stderr[-3000:]

    task = load_task("mirror_drift")
    proposal = MutationProposer(task).propose(
        ProposalRequest(
            task=task,
            island=0,
            generation=1,
            rng=random.Random(0),
            inspirations=[],
            failures=[],
            parents=[ParentView(1, task.baseline_source("ppo"), "ok", 1.0, "baseline")],
        )
    )
    engine = open_engine(db)
    with transaction(engine) as session:
        campaign = Campaign(
            name="search", task="mirror_drift", budget="smoke", proposer="llm", config={}
        )
        session.add(campaign)
        session.flush()
        for origin, code, fitness, calls in (
            ("llm", LLM_DRIFT, 1.1, [CallRecord("openai/recorded", [], "reply", 100, 50, 0.25)]),
            ("mutation", proposal.code, 1.05, []),
            ("distilled", DISTILLED, 0.97, []),
        ):
            candidate = writes.add_candidate(
                session,
                campaign,
                code=code,
                origin=origin,
                operator="stand-in",
                island=0,
                generation=1,
                calls=calls,
            )
            writes.record_evaluation(
                session, candidate.id, Evaluation("ok", fitness, 1.0, seconds=30.0)
            )

    done = cli(
        "compare",
        "es1",
        "search",
        "--sandbox",
        "process",
        "--executor",
        "ray",
        "--seed",
        "4242",
        "--blocks",
        "4",
        "--json",
        "--out",
        str(tmp_path / "report"),
        "--db",
        db,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    rows = {r["label"]: r for r in record["rows"]}
    assert list(rows) == ["PPO", "DPO", "LLM", "mutation", "ES (LPO)", "distilled"]
    assert record["blocks"] == 4 and record["seeds"] == 8
    for label, row in rows.items():
        assert row["status"] == "ok", (label, row)
        for split in ("meta_train", "meta_test"):
            score = row[split]
            # 4 blocks of the smoke budget's 2 seeds: 8, enough for an interval (one block
            # alone is too few: sandbox/fitness.py).
            assert score["seeds"] == 8 and score["ci_low"] <= score["ci_high"], (label, split)
        if label != "PPO":  # every row trained on PPO's seeds: a paired difference
            versus = row["versus_ppo"]
            assert versus["seeds"] == 8 and versus["low"] <= versus["high"], (label, versus)
    assert rows["LLM"]["search_fitness"] == 1.1 and rows["LLM"]["cost"]["dollars"] == pytest.approx(
        0.25
    )
    es_cost = rows["ES (LPO)"]["cost"]
    assert (
        es_cost["training_runs"] >= 2 * 4 and es_cost["env_steps"] > 0 and es_cost["dollars"] == 0
    )
    assert rows["PPO"]["cost"] is None and rows["PPO"]["candidate_id"] is None
    table = (tmp_path / "report" / "comparison.md").read_text()
    assert (
        all(label in table for label in rows) and "8 fresh seeds from training seed 4242" in table
    )
