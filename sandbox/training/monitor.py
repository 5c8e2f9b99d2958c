"""The runtime monitor: a kind of piece's conditions checked on the values training actually
computes, inside the compiled run, with no host round trip.

A kind of elementwise piece declares a `Monitor` (sandbox/pieces): probe entries evaluated in
the *same call* as the minibatch's own (for a drift: r = 1 and r = 1 +- h on the minibatch's
own advantages), so "all ratios are 1" is never a call of its own, and `inspect`, which
reduces the call to the worst entry of each condition: a score (> 0 breaks it) and the
values that show it. The trainer keeps, per update, the worst of its minibatches
(`TrainOutput.watch`); `violations` reads them back on the host and words the worst one as a
counterexample ("negative during training: drift(1.31, -0.42) = -0.013 at update 37").
Optimizers declare `inspect_updates`, applied to what each update changed.

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

    def noise_size(self, minibatch: int) -> int:
        """How many uniform random numbers in [0, 1) the probes of one call take."""

    def probes(self, inputs: tuple, noise) -> tuple:
        """Extra entries for each input (jnp arrays, one length), evaluated with the real ones;
        `noise`: noise_size uniform numbers, drawn by the trainer once per epoch for all its
        minibatches (one random draw instead of one per call)."""

    def inspect(self, inputs: tuple, values, probe_inputs: tuple, probe_values) -> dict[str, Watch]:
        """Per condition, the worst entry of this call (jnp scalars). A monitor with
        `slopes = True` also gets `slopes=(real, probes)`: the call's autodiff derivative in
        the first input, the one training differentiates, at every entry."""

    def describe(self, condition: str, fields: dict[str, float], update: int) -> str:
        """The violation in words, for the candidate's verdict and a proposer's repair."""


def layout(monitor: Monitor, noise, inputs: tuple):
    """The arguments of one monitored call, the real entries then the probes, and the
    probes. Not shuffled: telling entries apart by position takes a function that is not
    elementwise, which the contract check refuses on batches laid out the same way (and a
    shuffle's sort and scatter cost more than the probes)."""
    import jax
    import jax.numpy as jnp

    extra = monitor.probes(inputs, noise)
    joined = [jnp.concatenate([x, jax.lax.stop_gradient(p)]) for x, p in zip(inputs, extra)]
    return tuple(joined), extra


def watched_call(checked: Callable, monitor: Monitor | None, noise, *inputs):
    """`checked(*inputs)` with the monitor's probes in the same call: (values of the real
    entries, {condition: Watch}). `checked` enforces the piece's output contract. Where the
    monitor asks for slopes the call runs under jax.jvp in the first input: the same values
    (and gradient) for training, and the derivative training follows for the monitor."""
    if monitor is None:
        return checked(*inputs), {}
    arguments, extra = layout(monitor, noise, inputs)
    n = inputs[0].shape[0]
    if not getattr(monitor, "slopes", False):
        values = checked(*arguments)
        return values[:n], monitor.inspect(inputs, values[:n], extra, values[n:])
    import jax
    import jax.numpy as jnp

    first, *rest = arguments
    values, slopes = jax.jvp(lambda x: checked(x, *rest), (first,), (jnp.ones_like(first),))
    slopes = jax.lax.stop_gradient(slopes)  # watched only, never part of the loss
    watch = monitor.inspect(inputs, values[:n], extra, values[n:], slopes=(slopes[:n], slopes[n:]))
    return values[:n], watch


def unseen(shapes) -> dict:
    """A watch (by plug point, by condition) that any call's watch outscores: the start of an
    update's running worst case. `shapes`: its structure, as jax.eval_shape gives it."""
    import jax
    import jax.numpy as jnp

    def start(path, leaf):
        low = -jnp.inf if path[-1].key == "score" else 0.0
        return jnp.full(leaf.shape, low, leaf.dtype)

    return jax.tree_util.tree_map_with_path(start, shapes)


def keep_worst(current: dict, seen: dict) -> dict:
    """Per plug point and condition, whichever of two watches scores higher (a NaN score, a
    verdict that cannot be read, counts as the highest)."""
    import jax
    import jax.numpy as jnp

    def pick(old: Watch, new: Watch) -> Watch:
        higher = (new["score"] > old["score"]) | jnp.isnan(new["score"])
        return jax.tree.map(lambda a, b: jnp.where(higher, b, a), old, new)

    return {
        point: {c: pick(current[point][c], seen[point][c]) for c in current[point]}
        for point in current
    }


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
