"""Registries name every member of their vocabulary and refuse a name they do not know with
a message that lists the known ones (before: an unknown sandbox backend silently became the
process backend)."""

import dataclasses
from types import SimpleNamespace

import pytest
from test_reevaluation import stand_in_evaluate

from archive import reads
from archive.db import open_engine, transaction
from harness.backends import BACKENDS, _make
from sandbox.budgets import BUDGETS, Budget, EnvBudget
from sandbox.families import FAMILIES, SIZES, SUPPORTED_ENVS, family_of
from sandbox.tasks import Split, load_task
from sandbox.training.config import preset
from sandbox.vocabulary import ExecutorName, Origin, Sandbox
from scientist.campaign.config import CampaignConfig
from scientist.campaign.loop import CampaignLoop
from scientist.compare import compared_origins
from scientist.executors.registry import EXECUTORS, get_executor
from scientist.proposers.base import Proposal, ProposalRequest, ProposerError
from scientist.proposers.registry import PROPOSERS, make_proposer
from tests.stand_ins import blockwise


def test_every_name_in_the_vocabulary_is_registered():
    assert set(BACKENDS) == set(Sandbox) - {Sandbox.AUTO}
    # every environment of every budget belongs to exactly one family
    owners = [f.name for f in FAMILIES.values() for _ in f.env_ids]
    assert len(owners) == len(SUPPORTED_ENVS)
    assert {e for b in BUDGETS.values() for e in b.env_ids} <= set(SUPPORTED_ENVS)
    assert all(family_of(e).sizes[e] == SIZES[e] for e in SUPPORTED_ENVS)
    assert set(EXECUTORS) == set(ExecutorName)
    assert set(PROPOSERS) == {Origin.MUTATION, Origin.LLM}


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="gvisor.*docker, process"):
        _make("gvisor")
    with pytest.raises(ValueError, match="slurm.*local, ray"):
        get_executor("slurm")
    with pytest.raises(ProposerError, match="oracle.*mutation, llm"):
        make_proposer(SimpleNamespace(proposer="oracle"), load_task("mirror_drift"))
    with pytest.raises(ValueError, match="unknown proposer 'oracle'"):
        CampaignConfig(name="x", task="mirror_drift", proposer="oracle")
    with pytest.raises(ValueError, match="unknown environment 'Ant'.*CartPole-v1, Acrobot-v1"):
        preset("Ant")
    with pytest.raises(ValueError, match="unknown sandbox 'gvisor'; choose auto, docker, process"):
        CampaignConfig(name="x", task="mirror_drift", sandbox="gvisor")


class Constant:
    """A proposer that always writes the same drift, scaled by its slot: the smallest one."""

    name = "constant"

    def propose(self, request: ProposalRequest) -> Proposal:
        scale = 1 + request.generation + 10 * request.island + request.rng.random()
        code = (
            "import jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
            f"    return {scale:.6f} * jnp.square(ratio - 1.0)\n"
        )
        return Proposal(code=code, operator="constant", parent_ids=[], note="constant")

    def record_outcome(self, model: str, fitness_improved: bool) -> None:
        pass


def test_a_proposer_is_its_module_and_a_registry_line(tmp_path, monkeypatch):
    """Registered (here by patching the registry's table, as its one line would), a proposer
    runs a campaign by name, and its candidates carry its name as their origin, which
    `compare` lists beside the built-in ones."""
    monkeypatch.setitem(PROPOSERS, "constant", lambda config, task: Constant())
    config = CampaignConfig(
        name="constant", task="mirror_drift", proposer="constant", generations=1, population=2
    )
    proposer = make_proposer(config, load_task("mirror_drift"))
    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    campaign = CampaignLoop(engine, config, proposer, executor=blockwise(stand_in_evaluate)).run()
    assert campaign.status == "finished", campaign.message
    with transaction(engine) as session:
        origins = {c.origin for c in reads.candidates(session, campaign.id)}
    assert origins == {Origin.BASELINE, "constant"}
    assert ("constant", "constant") in compared_origins()


def test_a_budget_is_one_entry(monkeypatch):
    """A budget declared in sandbox/budgets.py alone (here added to its table) is a task's
    budget with the budget's own split, and a campaign's; one without budgets for the
    environments its split names is refused where it is declared."""
    tiny = Budget(
        name="tiny",
        description="a test's",
        seeds=1,
        eval_episodes=4,
        envs=(EnvBudget("CartPole-v1", 4_096, 22.52, 100.0),),
        meta_train=("CartPole-v1",),
        meta_test=(),
        full_seconds=60.0,
    )
    monkeypatch.setitem(BUDGETS, "tiny", tiny)
    load_task.cache_clear()
    try:
        task = load_task("mirror_drift")
        assert "tiny" in task.budgets
        assert task.split("tiny") == Split(("CartPole-v1",), ())
        assert CampaignConfig(name="x", task="mirror_drift", budget="tiny").budget == "tiny"
    finally:
        load_task.cache_clear()
    with pytest.raises(ValueError, match="Acrobot-v1"):
        dataclasses.replace(tiny, meta_test=("Acrobot-v1",))


def test_a_sandbox_backend_is_its_module_and_a_line(monkeypatch):
    """A backend registered by its line (module, class) is a sandbox name everywhere names
    are checked, and `get_backend` builds and preflights it (here the process backend's
    class under a second name, standing in for a new module)."""
    from harness.backends import _ready, get_backend
    from harness.backends.process import ProcessBackend

    monkeypatch.setitem(BACKENDS, "process_again", ("harness.backends.process", "ProcessBackend"))
    monkeypatch.setattr("harness.backends._ready", dict(_ready))
    assert CampaignConfig(name="x", task="mirror_drift", sandbox="process_again")
    assert isinstance(get_backend("process_again"), ProcessBackend)
