"""The runtime monitor: a kind of piece's conditions checked on the values training actually
computes, inside the compiled run, with no host round trip.

A kind of elementwise piece declares a `Monitor` (sandbox/pieces): probe entries evaluated in
the *same call* as the minibatch's own (for a drift: r = 1 and r = 1 +- h on the minibatch's
own advantages), shuffled among them so a call cannot tell which entries are probes, and
`inspect`, which reduces the call to the worst entry of each condition: a score (> 0 breaks
it) and the values that show it. The trainer keeps, per update, the worst of its minibatches
(`TrainOutput.watch`); `violations` reads them back on the host and words the worst one as a
counterexample ("negative during training: drift(1.31, -0.42) = -0.013 at update 37").

A piece's function is always called through `watched_call`, so the shapes the checks must
look at are the monitor's `call_sizes(minibatch)`.
"""

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

Watch = dict[str, Any]  # {"score": scalar, field: scalar, ...} for one condition


class Monitor(Protocol):
    def call_sizes(self, minibatch: int) -> tuple[int, ...]:
        """The lengths of the arrays training calls the piece's function with."""

    def probes(self, inputs: tuple, key) -> tuple:
        """Extra entries for each input (jnp arrays, one length), evaluated with the real ones."""

    def inspect(self, inputs: tuple, values, probe_inputs: tuple, probe_values) -> dict[str, Watch]:
        """Per condition, the worst entry of this call (jnp scalars)."""

    def describe(self, condition: str, fields: dict[str, float], update: int) -> str:
        """The violation in words, for the candidate's verdict and a proposer's repair."""


def layout(monitor: Monitor, key, inputs: tuple):
    """The arguments of one monitored call: the real entries and the probes, shuffled
    together; with the shuffle's order and the probes."""
    import jax
    import jax.numpy as jnp

    probe_key, order_key = jax.random.split(key)
    extra = monitor.probes(inputs, probe_key)
    joined = [jnp.concatenate([x, jax.lax.stop_gradient(p)]) for x, p in zip(inputs, extra)]
    order = jax.random.permutation(order_key, joined[0].shape[0])
    return tuple(x[order] for x in joined), order, extra


def watched_call(checked: Callable, monitor: Monitor | None, key, *inputs):
    """`checked(*inputs)` with the monitor's probes in the same call: (values of the real
    entries, {condition: Watch}). `checked` enforces the piece's output contract."""
    import jax.numpy as jnp

    if monitor is None:
        return checked(*inputs), {}
    arguments, order, extra = layout(monitor, key, inputs)
    shuffled = checked(*arguments)
    values = jnp.zeros_like(shuffled).at[order].set(shuffled)
    n = inputs[0].shape[0]
    return values[:n], monitor.inspect(inputs, values[:n], extra, values[n:])


def worst(watches: dict[str, Watch], axes: int) -> dict[str, Watch]:
    """The highest-scoring entry of each condition over the leading `axes` axes."""
    import jax.numpy as jnp

    out = {}
    for condition, watch in watches.items():
        flat = {k: v.reshape((-1, *v.shape[axes:])) for k, v in watch.items()}
        i = jnp.argmax(flat["score"], axis=0)
        out[condition] = {k: jnp.take_along_axis(v, i[None], axis=0)[0] for k, v in flat.items()}
    return out


def violations(
    watch: dict[str, Watch], monitor: Monitor | None, what: str = ""
) -> list[tuple[str, str]]:
    """(condition, counterexample in words) for each condition broken in a run's watch
    (arrays whose last axis is the update; any leading axes are runs, e.g. seeds)."""
    found = []
    if monitor is None:
        return found
    for condition, fields in watch.items():
        score = np.asarray(fields["score"], np.float64)
        score = np.where(np.isnan(score), np.inf, score)  # a NaN verdict is a violation
        if not (score > 0).any():
            continue
        index = np.unravel_index(int(np.argmax(score)), score.shape)
        values = {k: float(np.asarray(v)[index]) for k, v in fields.items()}
        found.append((condition, monitor.describe(condition, values, int(index[-1])) + what))
    return found
