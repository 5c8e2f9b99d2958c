"""The ES baseline: the LPO drift network, its rendering as a candidate, one compiled ES
generation, checkpoints in the archive with exact resumption, `scientist es` end to end, and
`scientist compare` on its result beside the other kinds of candidate."""

import sandbox  # noqa: F401  (sets XLA flags before jax is imported)

# isort: split

import dataclasses
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from archive import reads, writes
from archive.db import open_engine, transaction
from archive.schema import Campaign, Candidate, ESCheckpoint, Event
from harness.cascade import Evaluation, data_kind, evaluate_batch
from sandbox.budgets import get_budget
from sandbox.candidate import load_entry_point
from sandbox.checks.pipeline import check_candidate
from sandbox.checks.static import MAX_SOURCE_BYTES, check_source
from sandbox.pieces.drift import check_drift
from sandbox.tasks import load_baseline, load_task
from sandbox.training.lpo_network import (
    LPOParams,
    lpo_drift,
    network_function,
    parse_lpo_module,
    render_lpo_candidate,
)
from sandbox.vocabulary import Fidelity
from scientist.es.campaign import ESCampaignError, run_es_campaign
from scientist.es.checkpoint import (
    CheckpointError,
    params_from_bytes,
    params_to_bytes,
    state_from_bytes,
    state_to_bytes,
)
from scientist.es.lpo import init_params, slope_at_one
from scientist.es.trainer import ESSettings, GenerationUnits, make_es_generation, tail_returns
from scientist.proposers.base import CallRecord, ParentView, ProposalRequest
from scientist.proposers.mutation import MutationProposer

TINY = ESSettings(population=4, seeds=1)
# 4 updates of 4 envs x 128 steps: compiles and runs in seconds.
TINY_CONFIGS = {
    "CartPole-v1": dataclasses.replace(
        get_budget("smoke").config("CartPole-v1"), total_timesteps=4 * 512
    )
}


def grid():
    r = np.concatenate([np.geomspace(1e-3, 1e3, 241), 1.0 + np.linspace(-0.3, 0.3, 61)])
    a = np.linspace(-10.0, 10.0, 41)
    R, A = np.meshgrid(r, a, indexing="ij")
    return jnp.asarray(R, jnp.float32), jnp.asarray(A, jnp.float32)


def perturbed(scale: float, *, ppo_init: bool = True, seed: int = 1) -> LPOParams:
    """A 'trained-ish' network: the initial one moved by `scale` in every weight."""
    base = init_params(jax.random.key(0), ppo_init=ppo_init)
    k1, k2 = jax.random.split(jax.random.key(seed))
    return LPOParams(
        base.hidden + scale * jax.random.normal(k1, base.hidden.shape),
        base.output + scale * jax.random.normal(k2, base.output.shape),
    )


def test_the_ppo_initialised_network_is_ppo():
    params = init_params(jax.random.key(0))
    assert not np.any(np.asarray(params.output))
    R, A = grid()
    ppo = np.asarray(load_baseline("mirror_drift", "ppo")(R, A))
    lpo = np.asarray(lpo_drift(params, R, A))
    np.testing.assert_allclose(lpo, ppo, rtol=1e-6, atol=1e-5)
    assert np.all(lpo[ppo == 0] == 0)  # the 1e-6 shift is absorbed exactly where PPO's drift is 0
    assert np.all(np.asarray(lpo_drift(params, jnp.ones(41), A[0])) == 0)


@pytest.mark.parametrize("ppo_init", [True, False], ids=["ppo-init", "from-scratch"])
def test_the_rendered_module_computes_the_network_and_passes_the_real_checks(ppo_init):
    params = perturbed(0.01, ppo_init=ppo_init)
    code = render_lpo_candidate(
        params, ppo_init=ppo_init, note='test network; quotes " and __dunders__'
    )
    assert len(code.encode()) < MAX_SOURCE_BYTES and check_source(code) == []
    drift = load_entry_point(code, "drift")
    R, A = grid()
    np.testing.assert_allclose(
        np.asarray(drift(R, A)),
        np.asarray(lpo_drift(params, R, A, ppo_init=ppo_init)),
        rtol=1e-6,
        atol=1e-7,
    )
    report = check_candidate(load_task("mirror_drift"), code)
    assert report.valid, [c.detail for c in report.checks if not c.passed]


def test_rendering_stays_under_the_size_limit_for_any_weight_scale():
    for scale in (1e-6, 1e-3, 1.0, 1e3):
        params = perturbed(0.0)
        params = LPOParams(
            params.hidden * scale, jnp.full_like(params.output, -1.2345678e-5 * scale)
        )
        code = render_lpo_candidate(params)
        assert len(code.encode()) <= MAX_SOURCE_BYTES and check_source(code) == []
    with pytest.raises(ValueError, match="finite"):
        render_lpo_candidate(LPOParams(params.hidden, params.output.at[0].set(jnp.nan)))


def test_zero_slope_at_one_holds_while_the_shifted_relu_hides_the_networks_slope():
    """The features 1-r and log r have slope -1 and +1 at r = 1, so the network's own slope
    there is not 0; relu(x - 1e-6) flattens a neighbourhood of width 1e-6/|slope|. The real
    drift checks accept that while the slope is small and report a kink once it nears 2."""
    advantages = np.linspace(-10, 10, 41)
    small, large = perturbed(0.01), perturbed(0.3)
    assert (
        np.abs(slope_at_one(small, advantages)).max()
        < 1
        < 5
        < np.abs(slope_at_one(large, advantages)).max()
    )
    assert all(c.passed for c in check_drift(lambda r, a: lpo_drift(small, r, a)))
    verdict = {c.name: c.passed for c in check_drift(lambda r, a: lpo_drift(large, r, a))}
    assert verdict == {
        "finite": True,
        "non_negative": True,
        "zero_at_one": True,
        "zero_slope_at_one": False,
        "derivative_of_values": True,  # the network's gradient is its values'
    }


def test_tail_returns_average_the_episodes_of_the_last_updates():
    sums = jnp.array([[10.0, 0.0, 30.0, 50.0], [1.0, 1.0, 1.0, 0.0]])
    counts = jnp.array([[1, 0, 1, 1], [1, 1, 1, 0]])
    np.testing.assert_allclose(tail_returns(sums, counts, 0.5), [40.0, 1.0])
    assert np.isnan(tail_returns(sums, counts, 0.25)[1])  # no episode ended in the last update


@pytest.mark.timeout(300)
def test_one_generation_trains_the_population_in_one_compiled_call():
    es = make_es_generation("smoke", load_task("mirror_drift"), TINY, TINY_CONFIGS)
    assert es.envs == ("CartPole-v1",)
    assert es.units == GenerationUnits(training_runs=4, env_steps=4 * 2048)
    state = es.init_state(0)
    start_mean = es.mean_params(state)
    assert not np.any(start_mean.output)  # generation 0 is exactly PPO
    state, first = es.step(state, 1, seed=0)
    assert first.fitness.shape == (4,) and np.all(np.isfinite(first.fitness))
    assert first.returns.shape == (4, 1, 1) and set(first.per_env) == {"CartPole-v1"}
    # Antithetic pairs: member k and member k + P/2 mirror each other about the mean.
    np.testing.assert_allclose(
        first.population.output[:2] + first.population.output[2:], 0.0, atol=1e-6
    )
    assert first.compile_seconds > 0 and first.best >= first.mean
    state, second = es.step(state, 2, seed=0)
    assert second.compile_seconds == 0 and np.all(np.isfinite(second.fitness))
    assert es.trace_count == 1  # both generations ran the same compiled population call
    assert np.any(es.mean_params(state).output != 0)  # the mean moved


def test_es_state_round_trips_through_npz_bytes():
    es = make_es_generation("smoke", load_task("mirror_drift"), TINY, TINY_CONFIGS)
    state = es.init_state(3)
    population, state = es.strategy.ask(jax.random.key(1), state, es.strategy.default_params)
    state, _ = es.strategy.tell(
        jax.random.key(2), population, jnp.arange(4.0), state, es.strategy.default_params
    )
    restored = state_from_bytes(state_to_bytes(state), es.init_state(0))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    mean = es.mean_params(state)
    back = params_from_bytes(params_to_bytes(mean))
    assert np.array_equal(back.hidden, mean.hidden) and np.array_equal(back.output, mean.output)
    other = make_es_generation(
        "smoke", load_task("mirror_drift"), dataclasses.replace(TINY, hidden=16), TINY_CONFIGS
    )
    with pytest.raises(CheckpointError, match="different ES settings"):
        state_from_bytes(state_to_bytes(state), other.init_state(0))


def fake_evaluate(request):
    """Stands in for the sandbox cascade where only the bookkeeping is under test."""
    assert all(load_entry_point(code, "drift") is not None for code in request.sources)
    return [Evaluation("ok", 0.5, meta_test_fitness=0.25, backend="fake") for _ in request.sources]


@pytest.mark.timeout(300)
def test_a_campaign_checkpoints_every_generation_and_resumes_exactly(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    seen = []

    def run(name, generations, settings=TINY):
        return run_es_campaign(
            engine,
            settings,
            name,
            "mirror_drift",
            "smoke",
            generations,
            seed=5,
            on_progress=lambda p: seen.append((name, p.phase, p.generation)),
            executor=fake_evaluate,
            configs=TINY_CONFIGS,
        )

    first = run("split", 1)
    assert (
        first.origin == "es"
        and first.operator == "es-mean"
        and first.generation == 1
        and first.status == "ok"
    )
    seen.clear()
    final = run("split", 2)  # continues from the checkpoint of generation 1
    trained = [g for name, phase, g in seen if phase == "checkpoint"]
    assert trained == [2] and final.generation == 2 and final.status == "ok"
    run("whole", 2)  # the same two generations in one go

    def checkpoints(session, name):
        campaign_id = reads.get_campaign(session, name).id
        return session.exec(
            select(ESCheckpoint)
            .where(ESCheckpoint.campaign_id == campaign_id)
            .order_by(ESCheckpoint.generation)
        ).all()

    with transaction(engine) as session:
        split, whole = checkpoints(session, "split"), checkpoints(session, "whole")
        candidates = session.exec(
            select(Candidate).where(Candidate.campaign_id == first.campaign_id)
        ).all()
        totals = reads.es_totals(session, first.campaign_id)
        kinds = [
            e.kind
            for e in session.exec(
                select(Event).where(Event.campaign_id == first.campaign_id).order_by(Event.id)
            ).all()
        ]
    assert [r.generation for r in split] == [1, 2] and [r.generation for r in whole] == [1, 2]
    assert (
        split[1].state == whole[1].state and split[1].mean == whole[1].mean
    )  # resumption is exact
    assert split[1].member_fitness == whole[1].member_fitness and len(split[1].member_fitness) == 4
    assert all(
        r.training_runs == 4 and r.env_steps == 4 * 2048 and r.wall_seconds > 0 for r in split
    )
    assert totals == {
        "generations": 2,
        "training_runs": 8,
        "env_steps": 16384,
        "dollars": 0.0,
        "wall_seconds": pytest.approx(sum(r.wall_seconds for r in split)),
    }
    assert sorted(c.generation for c in candidates) == [1, 2] and all(
        c.origin == "es" for c in candidates
    )
    assert (
        kinds.count("es_generation") == 2
        and "resume" in kinds
        and kinds[-2:] == ["es_budget", "finished"]
    )

    with pytest.raises(ESCampaignError, match="sigma"):
        run("split", 3, dataclasses.replace(TINY, sigma=0.1))
    with pytest.raises(ESCampaignError, match="has 2 generations"):
        run("split", 1)


def test_the_command_refuses_other_tasks_and_odd_populations(tmp_path):
    from scientist.cli import app

    db = f"sqlite:///{tmp_path / 'archive.db'}"
    result = CliRunner().invoke(app, ["es", "--task", "value_loss", "--name", "x", "--db", db])
    assert result.exit_code == 2 and "only supports task mirror_drift" in result.output
    result = CliRunner().invoke(app, ["es", "--population", "5", "--name", "x", "--db", db])
    assert result.exit_code == 2 and "even" in result.output


@pytest.fixture(scope="module")
def es_run(tmp_path_factory):
    """`scientist es` at the smoke budget (2 generations of 4), its archive: shared by the
    end-to-end test and the comparison that re-trains its result (one ES compile for both)."""
    path = tmp_path_factory.mktemp("es") / "archive.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
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
            f"sqlite:///{path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    return path, result


@pytest.mark.slow
def test_scientist_es_end_to_end_at_the_smoke_budget(es_run):
    path, result = es_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "generation 1/2: best" in result.stdout and "generation 2/2: best" in result.stdout
    assert "sandbox score (fitness)" in result.stdout
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT origin, operator, status, fitness, generation, code FROM candidate"
        ).fetchall()
        checkpoints = db.execute(
            "SELECT generation, training_runs, env_steps FROM es_checkpoint ORDER BY generation"
        ).fetchall()
        proposer = db.execute("SELECT proposer, status FROM campaign WHERE name = 'es1'").fetchone()
    assert proposer == ("es", "finished")
    assert checkpoints == [(1, 4, 399_360), (2, 4, 399_360)]
    [(origin, operator, status, fitness, generation, code)] = rows
    assert (origin, operator, status, generation) == ("es", "es-mean", "ok", 2) and isinstance(
        fitness, float
    )
    assert check_candidate(load_task("mirror_drift"), code).valid
    with sqlite3.connect(path) as db:
        (stages,) = db.execute("SELECT stages FROM candidate").fetchone()
    trace = next(s for s in json.loads(stages) if s["name"] == "trace")
    assert "LPO network (128 hidden units): run as data" in trace["detail"]


CODE = (  # not of the mutation grammar (log1p): code
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    return jnp.log1p((ratio - 1.0) ** 2)\n"
)


def test_a_network_runs_as_data_only_when_its_module_is_exactly_its_rendering():
    """The sandbox runs a rendered LPO module as data (trusted code on its weights, read as
    literals) only when rendering those weights again gives the module's very text: any other
    statement, body or form is code, loaded in a sandbox like any candidate."""
    inputs = ("ratio", "advantage")
    for ppo_init in (True, False):
        params = perturbed(0.01, ppo_init=ppo_init)
        code = render_lpo_candidate(params, ppo_init=ppo_init, note="generation 3 of es1")
        network = parse_lpo_module(code, "drift", inputs)
        assert network is not None and network.ppo_init is ppo_init and network.shift == 1e-6
        np.testing.assert_array_equal(network.hidden, np.asarray(params.hidden, np.float32))
        assert data_kind("mirror_drift", code) == "LPONetwork"
        R, A = grid()
        np.testing.assert_array_equal(
            np.asarray(network_function(network)(R, A)),
            np.asarray(jax.jit(load_entry_point(code, "drift"))(R, A)),
        )
        other_ppo = code.replace(" + ppo(r, A)", "") if ppo_init else None
        for changed in (
            code + "\nimport os\n",
            code.replace("out - 1e-06", "out - 1e-05"),  # the body says one shift, the text another
            code.replace("jnp.tanh(x @", "jnp.sin(x @"),
            code.replace("HIDDEN = 128", "HIDDEN = 64"),
            other_ppo,
        ):
            if changed is not None:
                assert parse_lpo_module(changed, "drift", inputs) is None
    assert parse_lpo_module(code, "drift", (*inputs, "progress")) is None  # another task's form
    assert (
        data_kind("mirror_drift", LLM_DRIFT) == "Bytecode"
        and data_kind("mirror_drift", CODE) is None
    )


@pytest.mark.slow
def test_a_network_trains_as_data_exactly_as_its_module_loaded_as_code(es_run):
    """The ES mean of the campaign above, screened as data and, with one comment more (so no
    longer exactly a rendering), loaded as code: the same training numbers and score."""
    path, _ = es_run
    with sqlite3.connect(path) as db:
        (code,) = db.execute("SELECT code FROM candidate").fetchone()
    as_code = code + "# a comment: no longer exactly a rendering\n"
    assert data_kind("mirror_drift", as_code) is None
    screen = {"sandbox": "process", "eval_seed": 99, "fidelity": Fidelity.SCREEN}
    data, loaded = (
        evaluate_batch("mirror_drift", [c], "smoke", **screen)[0] for c in (code, as_code)
    )
    assert data.status == loaded.status == "ok", (data.stages, loaded.stages)
    assert "run as data" in data.stages[1].detail and "loaded drift()" in loaded.stages[1].detail
    assert data.per_env == loaded.per_env and data.fitness == loaded.fitness


LLM_DRIFT = (
    "import jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
    "    return 0.5 * jnp.square(jnp.log(ratio)) * (1.0 + jnp.abs(advantage))\n"
)
DISTILLED = (
    load_task("mirror_drift")
    .baseline_source("dpo")
    .replace("alpha, beta = 2.0, 0.6", "alpha, beta = 1.8, 0.5")
)


@pytest.mark.slow
def test_compare_prints_every_row_with_fresh_seed_scores_and_costs(es_run, tmp_path):
    """`scientist compare` end to end: the ES campaign above plus, archived directly in a
    second campaign, an LLM-written, a GP-proposed and a distilled drift with their
    search-time scores (their searches are covered end to end by test_campaign_llm,
    test_campaign and test_distill). compare re-trains all six rows for real on 4 fresh
    blocks of seeds (8 seeds, one run per batch), each batch as a task on a Ray cluster it
    starts on this machine (`--executor ray`), and prints one table."""
    path, es = es_run
    assert es.returncode == 0, es.stderr[-3000:]
    copy = tmp_path / "archive.db"  # the search campaign is added to a copy of the ES archive
    shutil.copyfile(path, copy)
    db = f"sqlite:///{copy}"

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

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
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
        ],
        capture_output=True,
        text=True,
        timeout=900,
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
