"""Candidates run as data: trusted functions of arrays that take a candidate's data (an
expression's bytecode, an LPO network's weights) as their first argument, so no candidate
code is loaded, every such function is elementwise by construction, and all candidates of
one kind share compiled code.

Each kind registers its jitted runner here; a candidate's function is
`Partial(runner, data)` (jax.tree_util), a pytree whose leaves are its data.
"""

import functools
from collections.abc import Callable

_RUNNERS: list[Callable] = []


def runner(run: Callable) -> Callable:
    """`run(data, *inputs)` jitted once per process and registered as a runner of data."""

    @functools.cache
    def jitted() -> Callable:
        import jax

        compiled = jax.jit(run)
        _RUNNERS.append(compiled)
        return compiled

    return jitted


def runs_as_data(function) -> bool:
    """Whether `function` is a registered runner bound to a candidate's data."""
    return any(getattr(function, "func", None) is r for r in _RUNNERS)
