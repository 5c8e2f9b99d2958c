"""The Learnt Policy Optimisation (LPO) drift network, and its candidate module run as data.

Following "Discovered Policy Optimisation" (Lu et al., 2022, section 4.1): eight features of
(r, A), one hidden layer of tanh units and no biases anywhere, so every feature and hence the
network output is exactly 0 at r = 1. The output goes through a ReLU shifted by 1e-6, which
makes the drift non-negative and identically 0 in a small neighbourhood of r = 1 (so its
slope there is 0). In the PPO-initialised variant PPO's own drift is added before the ReLU
and the output layer starts at zero, so the untrained network *is* PPO (up to the 1e-6
shift where PPO's drift is positive). From scratch (`ppo_init=False`, the paper's LPO-Zero)
the output is relu(net - 1e-6).

Caveat worth knowing: the network's first-order slope at r = 1 is generally not 0 (the
features 1 - r and log r have slope -1 and 1 there); only the shifted ReLU's dead zone,
of width about 1e-6 / |slope|, flattens it. The sandbox's drift check probes down to steps of
1e-6 and reports a kink once that slope reaches about 2 for some |A| <= 10.

A network reaches the sandbox as a rendered mirror_drift module (`render_lpo_candidate`,
what ES campaigns archive). A module that is exactly such a rendering (`parse_lpo_module`:
its weights read back as literals and rendered again give the same text) runs as data, as
an expression's bytecode does: no candidate code is loaded, and every network of a batch
trains through one compiled program, which the program cache keeps across runs.
"""

import ast
import re
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.training.as_data import runner

NUM_FEATURES = 8
HIDDEN = 128
SHIFT = 1e-6  # the paper's xi
PPO_CLIP = 0.2  # PPO's epsilon, as in the mirror_drift ppo baseline


class LPOParams(NamedTuple):
    """The network's weights: a pytree ES can perturb leaf by leaf."""

    hidden: jnp.ndarray  # [NUM_FEATURES, hidden units]
    output: jnp.ndarray  # [hidden units]


def features(ratio: jnp.ndarray, advantage: jnp.ndarray) -> jnp.ndarray:
    """[(1-r), (1-r)^2, (1-r)A, (1-r)^2 A, log r, (log r)^2, A log r, A (log r)^2] on a new last
    axis."""
    d, log_r, a = 1.0 - ratio, jnp.log(ratio), advantage
    return jnp.stack(
        [d, d * d, d * a, d * d * a, log_r, log_r * log_r, a * log_r, a * log_r * log_r], axis=-1
    )


def ppo_drift(
    ratio: jnp.ndarray, advantage: jnp.ndarray, clip_eps: float = PPO_CLIP
) -> jnp.ndarray:
    """PPO's clipped objective as a drift: relu((r - clip(r, 1-eps, 1+eps)) A)."""
    return jax.nn.relu((ratio - jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)) * advantage)


def network(params: LPOParams, ratio: jnp.ndarray, advantage: jnp.ndarray) -> jnp.ndarray:
    """The raw network output before the PPO term and the shifted ReLU."""
    x = features(ratio, advantage)
    return jnp.tanh(x @ params.hidden.astype(x.dtype)) @ params.output.astype(x.dtype)


def lpo_drift(
    params: LPOParams,
    ratio: jnp.ndarray,
    advantage: jnp.ndarray,
    *,
    ppo_init: bool = True,
    shift: float = SHIFT,
) -> jnp.ndarray:
    """drift(r, A) = relu(net(r, A) [+ ppo_drift(r, A)] - shift), elementwise."""
    out = network(params, ratio, advantage)
    if ppo_init:
        out = out + ppo_drift(ratio, advantage)
    return jax.nn.relu(out - shift)


# -- rendering as a candidate module ---------------------------------------------------------

TEMPLATE = "lpo_network.py.j2"
VALUES_PER_LINE = 10


def _literals(values: np.ndarray, digits: int | None) -> str:
    """float32 values as Python literals: the shortest that round-trips (digits=None), else
    `digits` significant digits."""
    values = np.asarray(values, np.float32).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError("LPO weights must be finite to be rendered")
    text = [str(v) if digits is None else f"{float(v):.{digits}g}" for v in values]
    lines = [", ".join(text[i : i + VALUES_PER_LINE]) for i in range(0, len(text), VALUES_PER_LINE)]
    return ",\n".join("    " + line for line in lines)


def _docstring_safe(note: str) -> str:
    """Plain characters only: no quotes or backslashes, and no '__' (the static checks refuse
    string constants containing it)."""
    return re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9 .,:;=+()/_-]", "_", " ".join(note.split())))


def render_lpo_candidate(
    params: LPOParams, *, ppo_init: bool = True, shift: float = SHIFT, note: str = ""
) -> str:
    """A complete mirror_drift candidate module computing `lpo_drift(params, ., ., ppo_init, shift)`
    in jax.numpy, so a learned network goes through the same sandbox and scorer as any other
    candidate. Weights are written exactly (shortest float32 round trip); if that would pass
    the static checks' size limit they are rounded to 7 significant digits instead."""
    from sandbox.checks.static import MAX_SOURCE_BYTES
    from sandbox.tasks import load_task

    hidden = np.asarray(params.hidden)
    if (
        hidden.ndim != 2
        or hidden.shape[0] != NUM_FEATURES
        or np.shape(params.output) != (hidden.shape[1],)
    ):
        raise ValueError(
            f"expected weights [{NUM_FEATURES}, H] and [H], "
            f"got {hidden.shape} and {np.shape(params.output)}"
        )
    template = load_task("mirror_drift").template(TEMPLATE)
    for digits in (None, 7):
        source = template.render(
            hidden=hidden.shape[1],
            hidden_weights=_literals(hidden, digits),
            output_weights=_literals(params.output, digits),
            ppo_init=ppo_init,
            shift=repr(float(shift)),
            note=_docstring_safe(note),
        )
        if len(source.encode()) <= MAX_SOURCE_BYTES:
            return source
    raise ValueError(
        f"the rendered network is {len(source.encode())} bytes, "
        f"over the {MAX_SOURCE_BYTES}-byte limit"
    )


# -- a rendered module, run as data ----------------------------------------------------------


@dataclass(frozen=True)
class LPONetwork:
    """What a rendered module computes: its weights and its form."""

    hidden: np.ndarray  # float32 [NUM_FEATURES, H]
    output: np.ndarray  # float32 [H]
    ppo_init: bool
    shift: float

    def slot(self) -> tuple[np.ndarray, ...]:
        """The arrays a trainer's member slot holds; the shift stays float64 until the inputs'
        dtype is known, as the module's literal does."""
        return self.hidden, self.output, np.asarray(self.ppo_init), np.asarray(self.shift)

    def empty(self) -> "LPONetwork":
        """A slot's filler of the same shapes (never trained)."""
        return LPONetwork(np.zeros_like(self.hidden), np.zeros_like(self.output), False, 0.0)


_DOCSTRING = re.compile(
    r"LPO drift network meta-learned by evolution strategies(?:: (?P<note>[^\n]*))?\.\n\n"
    r"drift\(r, A\) = relu\(tanh\(x @ W_HIDDEN\) @ W_OUTPUT(?P<ppo> \+ ppo\(r, A\))? - "
    r"(?P<shift>[0-9.e+-]+)\)"
)


def parse_lpo_module(source: str, entry_point: str, inputs: tuple[str, ...]) -> LPONetwork | None:
    """The network of a module that is exactly a rendering of one (`render_lpo_candidate` of
    the weights read back from it gives the same text), None for anything else. Only literals
    are read (ast.literal_eval): nothing of the module runs."""
    if entry_point != "drift" or tuple(inputs) != ("ratio", "advantage"):
        return None  # the network is a mirror_drift candidate
    if "W_HIDDEN" not in source:
        return None  # not worth parsing
    try:
        module = ast.parse(source)
        found = _DOCSTRING.match(ast.get_docstring(module, clean=False) or "")
        assigned = {
            s.targets[0].id: s.value
            for s in module.body
            if isinstance(s, ast.Assign)
            and len(s.targets) == 1
            and isinstance(s.targets[0], ast.Name)
        }
        size = ast.literal_eval(assigned["HIDDEN"])
        hidden, output = (_literal_list(assigned[name]) for name in ("W_HIDDEN", "W_OUTPUT"))
        if found is None or not isinstance(size, int) or hidden.size != NUM_FEATURES * size:
            return None
        network = LPONetwork(
            hidden.reshape(NUM_FEATURES, size),
            output,
            ppo_init=found["ppo"] is not None,
            shift=float(found["shift"]),
        )
        rendered = render_lpo_candidate(
            LPOParams(network.hidden, network.output),
            ppo_init=network.ppo_init,
            shift=network.shift,
            note=found["note"] or "",
        )
    except (SyntaxError, ValueError, TypeError, KeyError, RecursionError, MemoryError):
        return None
    return network if rendered == source else None


def _literal_list(node: ast.expr) -> np.ndarray:
    """The float32 values of the one list literal inside `node` (`jnp.array([...], ...)`)."""
    (values,) = [n for n in ast.walk(node) if isinstance(n, ast.List)]
    return np.asarray(ast.literal_eval(values), np.float32)


def run_network(slot, ratio, advantage):
    """The drift of a network held as data (`LPONetwork.slot()`, concrete or traced): the
    operations the rendered module runs, so the same values."""
    hidden, output, ppo_init, shift = slot
    out = network(LPOParams(hidden, output), ratio, advantage)
    out = jnp.where(ppo_init, out + ppo_drift(ratio, advantage), out)
    return jax.nn.relu(out - shift.astype(out.dtype))


_jitted_run = runner(run_network)


def network_function(network: LPONetwork):
    """The network as a function of (ratio, advantage), `Partial(jit(run_network), slot)`: like
    an expression's bytecode, every network shares the checks' compiled probes."""
    from jax.tree_util import Partial

    return Partial(_jitted_run(), network.slot())
