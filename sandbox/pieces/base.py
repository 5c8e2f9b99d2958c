"""The interface of a kind of plug-in piece, and the numeric tools its conditions share.

A *piece* is a function that fills one plug point of the trainer (a drift, a value loss, an
optimizer factory, ...). Its module in this package declares everything about that kind
once (`Piece`): where it plugs in, its contract, its validity conditions (the thorough check
run in the sandbox, and the cheap pre-screen of the mutation proposer, both from the same
definitions and tolerances), the inputs of its behaviour signature, whether it has a
landscape, and its default baseline. Task folders name a kind (`piece = "drift"`).

Conditions see a candidate through a `Probe`: its values, and its derivative in the first
input as JAX's autodiff reports it, at given points. The sandbox probes the loaded function
with JAX in float64; the mutation proposer probes an expression tree with numpy, without
running any candidate code. Piece modules import JAX only inside the functions that run a
candidate, so the orchestrator reads their declarations without loading it.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from sandbox.checks.report import CheckResult
from sandbox.training.components import PlugPoint


class Contract(StrEnum):
    """What the trainer may assume of a piece's function."""

    ELEMENTWISE = (
        "elementwise"  # arrays in, one array of their shape out, each entry from its own inputs
    )
    TRANSFORMATION = "transformation"  # a factory of an optax.GradientTransformation


class Probe(Protocol):
    def values(self, *inputs: np.ndarray) -> np.ndarray: ...

    def slope(self, *inputs: np.ndarray) -> np.ndarray:
        """d(output)/d(first input), elementwise, the way JAX's autodiff reports it (also at
        a kink, where it picks one side)."""


class JaxProbe:
    """A loaded elementwise function, evaluated with JAX in float64 (the caller enables x64).

    The function reaches the compiled probes as an argument (a `jax.tree_util.Partial`), so
    functions that differ only in their arrays share compiled code: an expression program
    (`Partial(interpret, arrays)`) is compiled once per process for every program."""

    def __init__(self, function: Callable):
        from jax.tree_util import Partial  # only where a real candidate is probed: the sandbox

        self.function = function if isinstance(function, Partial) else Partial(function)

    def values(self, *inputs: np.ndarray) -> np.ndarray:
        return self._run(_compiled_probes()[0], inputs)

    def slope(self, *inputs: np.ndarray) -> np.ndarray:
        return self._run(_compiled_probes()[1], inputs)

    def _run(self, probe: Callable, inputs) -> np.ndarray:
        return np.asarray(
            probe(self.function, *(np.asarray(x, np.float64) for x in inputs)), np.float64
        )


@functools.cache
def _compiled_probes() -> tuple[Callable, Callable]:
    """(values, slope), jitted once per process; each takes the function as its first
    argument."""
    import jax

    def values(function, *inputs):
        return function(*inputs)

    def slope(function, *inputs):
        def one(x, *rest):
            return function(x[None], *(r[None] for r in rest))[0]

        return jax.vmap(jax.grad(one))(*inputs)

    return jax.jit(values), jax.jit(slope)


@dataclass(frozen=True)
class Condition:
    """One validity condition: its name in check reports and the pre-screen's short reason."""

    name: str
    short: str


@dataclass(frozen=True)
class Screen:
    """What the mutation proposer needs beyond the conditions: points whose values tell
    whether a variation changed anything (`fingerprint`), and where validity is decided
    (`anchor`: the value and slope there; subtrees that agree there swap safely)."""

    check: Callable[[Probe], str | None]  # the first failing condition's short reason, or None
    fingerprint: tuple[np.ndarray, ...]
    anchor: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Piece:
    kind: str  # the `piece` key of a task.toml
    plug_point: PlugPoint  # the trainer's Components field it fills
    contract: Contract
    arity: int  # positional inputs of the entry point
    default: (
        tuple[str, str] | None
    )  # (task, baseline): what the trainer uses when no candidate fills it
    check: Callable[[Callable, str], list[CheckResult]]  # the validity conditions, thoroughly
    behaviour: Callable[[Callable], np.ndarray]  # outputs on the fixed behaviour-signature inputs
    evidence: str  # how the conditions are established, for reports
    screen: Screen | None = None  # for the mutation proposer; None: no pre-screen
    has_landscape: bool = (
        False  # a (ratio, advantage) landscape can be drawn (sandbox/landscape.py)
    )


def grid(*axes: Sequence[float]) -> list[np.ndarray]:
    """Every combination of the axes' values, one flat array per axis."""
    return [
        m.ravel() for m in np.meshgrid(*(np.asarray(a, np.float64) for a in axes), indexing="ij")
    ]


def unique(*parts) -> np.ndarray:
    return np.unique(np.concatenate([np.atleast_1d(np.asarray(p, np.float64)) for p in parts]))


def first_failure(conditions: Sequence[tuple[Condition, Callable[[], CheckResult]]]) -> str | None:
    """Run conditions in order; the short reason of the first that fails, or None. A probe
    that cannot evaluate (ArithmeticError: an unbounded intermediate value) fails the first."""
    for condition, run in conditions:
        try:
            if not run().passed:
                return condition.short
        except ArithmeticError:
            return conditions[0][0].short
    return None
