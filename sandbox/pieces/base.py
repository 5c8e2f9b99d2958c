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
from typing import Any, Protocol

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
    functions that differ only in their arrays share compiled code: a candidate run as data
    (`Partial(runner, data)`, sandbox/training/as_data.py) is compiled once per process for
    all candidates of its kind.

    Slopes are taken one point at a time (each point its own call), so a function that mixes
    entries cannot pass off another entry's derivative as its own; a candidate run as data is
    elementwise by construction (sandbox/training/as_data.py), so its slope is the gradient
    of one call's sum: the same derivatives, without a per-point call."""

    def __init__(self, function: Callable):
        from jax.tree_util import Partial  # only where a real candidate is probed: the sandbox

        from sandbox.training.as_data import runs_as_data

        self.function = function if isinstance(function, Partial) else Partial(function)
        self.elementwise = runs_as_data(self.function)

    def values(self, *inputs: np.ndarray) -> np.ndarray:
        return self._run(_compiled_probes()[0], inputs)

    def slope(self, *inputs: np.ndarray) -> np.ndarray:
        return self._run(_compiled_probes()[2 if self.elementwise else 1], inputs)

    def _run(self, probe: Callable, inputs) -> np.ndarray:
        return np.asarray(
            probe(self.function, *(np.asarray(x, np.float64) for x in inputs)), np.float64
        )


class SizedProbe:
    """A loaded elementwise function called the way training calls it: on float32 arrays of
    exactly `size` entries (points are cut into such calls, the last one padded). What it
    does at other shapes or in float64 is not what trains."""

    def __init__(self, function: Callable, size: int):
        from jax.tree_util import Partial

        self.function = function if isinstance(function, Partial) else Partial(function)
        self.size = size

    def values(self, *inputs: np.ndarray) -> np.ndarray:
        return self._run(_sized_probes()[0], inputs)

    def slope(self, *inputs: np.ndarray) -> np.ndarray:
        return self._run(_sized_probes()[1], inputs)

    def _run(self, probe: Callable, inputs) -> np.ndarray:
        arrays = [a.ravel() for a in np.broadcast_arrays(*(np.asarray(x) for x in inputs))]
        n = arrays[0].size
        # Blocks of a fixed number of calls: one compiled shape per size, whatever the count.
        calls = max(1, SIZED_BLOCK // self.size)
        block = calls * self.size
        total = -(-n // block) * block
        padded = [
            np.concatenate([a, np.repeat(a[-1:], total - n)]).astype(np.float32) for a in arrays
        ]
        out = [
            np.asarray(
                probe(self.function, *(a[i : i + block].reshape(calls, self.size) for a in padded))
            )
            for i in range(0, total, block)
        ]
        return np.concatenate(out).astype(np.float64).ravel()[:n]


SIZED_BLOCK = 16_384  # entries per compiled call of a SizedProbe


@functools.cache
def _sized_probes() -> tuple[Callable, Callable]:
    """(values, slope) over [calls, size] arrays, each row one call of the function."""
    import jax
    import jax.numpy as jnp

    def values(function, *inputs):
        return jax.vmap(function)(*inputs)

    def slope(function, first, *rest):
        # Reverse mode, as training differentiates: it differs from forward mode where an
        # unused branch's derivative is NaN (0 x inf in the transpose). The function is
        # elementwise, so the gradient of the call's sum is the elementwise derivative.
        def one_call(x, *others):
            return jax.grad(lambda x: jnp.sum(function(x, *others)))(x)

        return jax.vmap(one_call)(first, *rest)

    return jax.jit(values), jax.jit(slope)


@functools.cache
def _compiled_probes() -> tuple[Callable, Callable, Callable]:
    """(values, slope point by point, slope of an elementwise function's summed call),
    jitted once per process; each takes the function as its first argument."""
    import jax
    import jax.numpy as jnp

    def values(function, *inputs):
        return function(*inputs)

    def slope(function, *inputs):
        def one(x, *rest):
            return function(x[None], *(r[None] for r in rest))[0]

        return jax.vmap(jax.grad(one))(*inputs)

    def summed_slope(function, first, *rest):
        shape = np.broadcast_shapes(first.shape, *(r.shape for r in rest))
        rest = [jnp.broadcast_to(r, shape) for r in rest]
        return jax.grad(lambda x: jnp.sum(function(x, *rest)))(jnp.broadcast_to(first, shape))

    return jax.jit(values), jax.jit(slope), jax.jit(summed_slope)


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
    )  # (task, baseline): the same function as the trainer's default (ppo.Components)
    # The validity conditions, thoroughly: check(function, filename, *, sizes, proof_function).
    check: Callable[..., list[CheckResult]]
    behaviour: Callable[[Callable], np.ndarray]  # outputs on the fixed behaviour-signature inputs
    evidence: str  # how the conditions are established, for reports
    screen: Screen | None = None  # for the mutation proposer; None: no pre-screen
    has_landscape: bool = (
        False  # a (ratio, advantage) landscape can be drawn (sandbox/landscape.py)
    )
    # Checks inside training (sandbox/training/monitor.py): a Monitor for elementwise kinds.
    monitor: Any = None
    # Inputs like those of a training minibatch: typical(n, rng) -> one array per input.
    typical: Callable[[int, np.random.Generator], tuple[np.ndarray, ...]] | None = None


# Besides the training calls' own sizes, a few others a candidate might single out.
OTHER_SIZES = (1, 7)


def minibatch_sizes(budgets: Sequence[str] | None = None) -> tuple[int, ...]:
    """The minibatch sizes training uses at these budgets (default: all of them)."""
    from sandbox.budgets import BUDGETS

    chosen = [BUDGETS[name] for name in (budgets or BUDGETS)]
    return tuple(sorted({b.config(e).minibatch_size for b in chosen for e in b.env_ids}))


def call_sizes(piece: "Piece", budgets: Sequence[str] | None = None) -> tuple[int, ...]:
    """Every length of the arrays training calls the piece's function with at these budgets
    (its monitor decides: probes ride along), the minibatch sizes themselves, and OTHER_SIZES:
    where the checks look."""
    sizes = set(OTHER_SIZES)
    for m in minibatch_sizes(budgets):
        sizes.add(m)
        if piece.monitor is not None and piece.contract is Contract.ELEMENTWISE:
            sizes.update(piece.monitor.call_sizes(m))
    return tuple(sorted(sizes))


def training_batches(piece: "Piece", budgets: Sequence[str] | None = None, seed: int = 0):
    """Batches built the way training builds a call of the piece's function: a minibatch of
    typical inputs (advantages standardised, as the trainer does), alone and with the
    monitor's probes appended, and the latter shuffled. The elementwise contract compares
    each with its entries one at a time."""
    import jax.numpy as jnp

    from sandbox.training.monitor import layout

    rng = np.random.default_rng(seed)
    batches = []
    for m in minibatch_sizes(budgets):
        real = tuple(jnp.asarray(x, jnp.float32) for x in piece.typical(m, rng))
        batches.append(real)
        if piece.monitor is not None:
            noise = jnp.asarray(rng.uniform(size=piece.monitor.noise_size(m)), jnp.float32)
            batches.append(layout(piece.monitor, noise, real)[0])
            # and the same entries in another order: a function reading positions differs
            order = rng.permutation(batches[-1][0].shape[0])
            batches.append(tuple(x[order] for x in batches[-1]))
    return batches


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
