"""Registries name every member of their vocabulary and refuse a name they do not know with
a message that lists the known ones (before: an unknown sandbox backend silently became the
process backend)."""

from types import SimpleNamespace

import pytest

from sandbox.backends import BACKENDS, _make
from sandbox.tasks import load_task
from sandbox.vocabulary import ExecutorName, Proposer, Sandbox
from scientist.executors.registry import EXECUTORS, get_executor
from scientist.proposers.base import ProposerError
from scientist.proposers.registry import PROPOSERS, make_proposer


def test_every_name_in_the_vocabulary_is_registered():
    assert set(BACKENDS) == set(Sandbox) - {Sandbox.AUTO}
    assert set(EXECUTORS) == set(ExecutorName)
    assert set(PROPOSERS) == set(Proposer)


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="gvisor.*docker, process"):
        _make("gvisor")
    with pytest.raises(ValueError, match="slurm.*local, ray"):
        get_executor("slurm")
    with pytest.raises(ProposerError, match="oracle.*mutation, llm"):
        make_proposer(SimpleNamespace(proposer="oracle"), load_task("mirror_drift"))
