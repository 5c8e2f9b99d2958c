"""Temporally-aware drifts (task mirror_drift_temporal): the trainer passes the progress n/N,
the conditions must hold at every progress value, and a candidate is checked, trained,
monitored and archived like any drift."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from sandbox.tasks import load_task
from sandbox.training.config import preset
from sandbox.training.ppo import Components, policy_loss
from sandbox.training.run import lower_batch
from scientist.cli import app

TASK = load_task("mirror_drift_temporal")


def module(body: str) -> str:
    header = "import jax\nimport jax.numpy as jnp\n\n\ndef drift(ratio, advantage, progress):\n"
    return f"{header}    return {body}\n"


def test_the_policy_loss_gives_a_temporal_drift_the_progress():
    ratio = jnp.asarray([0.5, 1.0, 1.5, 2.0])
    advantage = jnp.asarray([1.0, -1.0, 0.5, 2.0])
    components = Components(temporal_drift=lambda r, a, p: p * jnp.square(r - 1.0))
    loss, (point, _) = policy_loss(components, ratio, advantage, 0.25)
    want = -jnp.mean(ratio * advantage - 0.25 * jnp.square(ratio - 1.0))
    assert point == "temporal_drift" and float(loss) == pytest.approx(float(want))


def test_training_passes_n_over_n_and_a_drift_ignoring_it_trains_as_the_plain_drift():
    """PPO as a temporal drift trains exactly as PPO, and every call it gets has progress
    n/N for the update n it is in, each update's calls in turn; the monitor watches a
    temporal drift where asked."""
    config = preset("CartPole-v1", total_timesteps=8 * 512, monitor=("temporal_drift",))
    namespace = {}
    exec(TASK.baseline_source("ppo"), namespace)  # trusted: the task's own baseline
    ppo = namespace["drift"]
    seen = []

    def recorded(r, a, p):
        jax.debug.callback(lambda p: seen.append(np.unique(np.asarray(p))), p)
        return ppo(r, a, p)

    def trained(components):
        return lower_batch(config, components, seeds=1, seed=3).compile().run().output

    plain = trained(Components(drift=lambda r, a: ppo(r, a, None)))
    temporal = trained(Components(temporal_drift=recorded))
    for got, want in zip(
        jax.tree.leaves(temporal._replace(watch=None)),
        jax.tree.leaves(plain._replace(watch=None)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert set(temporal.watch) == {"temporal_drift"} and not plain.watch
    calls = config.update_epochs * config.num_minibatches  # per update
    want = np.repeat(np.arange(config.num_updates) / config.num_updates, calls)
    assert all(p.size == 1 for p in seen)
    np.testing.assert_allclose(np.concatenate(seen), want, rtol=1e-6)


# The held-out kind of set: valid and invalid, some invalid only at some progress values.
CHECKED = {
    "PPO, whatever the progress": ("ppo", True, None),
    "PPO whose clip shrinks over training": ("ppo_annealed", True, None),
    "negative late in training": (
        module("jnp.square(ratio - 1.0) * (1.0 - 2.0 * progress)"),
        False,
        "non_negative",
    ),
    "negative only near progress 0.3": (
        module(
            "jnp.square(ratio - 1.0) * (1.0 - 500.0 * jax.nn.relu(0.05 - jnp.abs(progress - 0.3)))"
        ),
        False,
        "non_negative",
    ),
    "a kink at r = 1 only mid-training": (
        module("jnp.abs(ratio - 1.0) * jax.nn.relu(progress - 0.4) * jax.nn.relu(0.6 - progress)"),
        False,
        "zero_slope_at_one",
    ),
    "not finite at the start": (module("jnp.square(ratio - 1.0) * jnp.log(progress)"), False, None),
}


@pytest.mark.parametrize("name", list(CHECKED))
def test_scientist_check_decides_at_every_progress_value(name, tmp_path):
    source, valid, failing = CHECKED[name]
    if source in TASK.baseline_names:
        source = TASK.baseline_source(source)
    path = tmp_path / "candidate.py"
    path.write_text(source)
    result = CliRunner().invoke(
        app,
        ["check", str(path), "--task", TASK.name, "--sandbox", "process", "--json"],
    )
    assert result.exit_code == (0 if valid else 1), result.output
    report = json.loads(result.output.splitlines()[0])
    assert report["valid"] is valid
    if valid:  # proved at some progress values at most: never labelled certified
        assert report["assurance"] != "certified"
        assert all("progress" in c["proof"]["detail"] for c in report["checks"] if c["proof"])
    else:
        failed = [c for c in report["checks"] if not c["passed"]]
        assert failing is None or failing in {c["name"] for c in failed}, failed
        if failing:  # the counterexample says where in training it fails
            assert all("progress" in (c["counterexample"] or {}) for c in failed), failed


def test_a_progress_dependent_proposal_is_screened_trained_monitored_and_archived(tmp_path):
    """A one-generation GP campaign on the temporal task: proposals from its grammar (which
    has progress), checked in the sandbox, trained with the monitor at each update's
    progress, archived with their lineage."""
    from archive import reads
    from archive.db import open_engine, transaction
    from scientist.campaign.config import CampaignConfig
    from scientist.campaign.loop import CampaignLoop
    from scientist.proposers.mutation import MutationProposer

    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    config = CampaignConfig(
        name="temporal",
        task=TASK.name,
        budget="smoke",
        sandbox="process",
        generations=1,
        islands=1,
        population=2,
        workers=1,
        seed=5,
        reevaluate_top=0,
    )
    campaign = CampaignLoop(engine, config, MutationProposer(TASK)).run()
    assert campaign.status == "finished", campaign.message
    with transaction(engine) as session:
        rows = reads.candidates(session, campaign.id)
    assert sum(c.origin == "baseline" for c in rows) == len(TASK.baseline_names)
    proposed = [c for c in rows if c.origin != "baseline"]
    assert len(proposed) == config.population and all(c.status != "pending" for c in proposed)
    scored = [c for c in rows if c.status == "ok"]
    assert all(c.fitness is not None and np.isfinite(c.fitness) for c in scored)
    # the annealed clip trained at every update's progress, watched, and is archived so
    annealed = next(c for c in scored if "0.2 * progress" in c.code)
    assert annealed.checks["assurance"] == "passed sampling"
