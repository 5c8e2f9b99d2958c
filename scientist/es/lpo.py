"""The Learnt Policy Optimisation (LPO) drift network, as pure JAX functions.

Following "Discovered Policy Optimisation" (Lu et al., 2022, section 4.1): eight features of
(r, A), one hidden layer of tanh units and no biases anywhere, so every feature and hence the
network output is exactly 0 at r = 1. The output goes through a ReLU shifted by 1e-6, which
makes the drift non-negative and identically 0 in a small neighbourhood of r = 1 (so its
slope there is 0). In the PPO-initialised variant PPO's own drift is added before the ReLU
and the output layer starts at zero, so the untrained network *is* PPO (up to the 1e-6
shift where PPO's drift is positive).

From scratch (`ppo_init=False`, the paper's LPO-Zero) the output is relu(net - 1e-6) and the
output layer starts small and random instead (a zero one would start exactly at the
unconstrained surrogate, the `zero` baseline).

Caveat worth knowing: the network's first-order slope at r = 1 is generally not 0 (the
features 1 - r and log r have slope -1 and 1 there); only the shifted ReLU's dead zone,
of width about 1e-6 / |slope|, flattens it. The sandbox's drift check probes down to steps of
1e-6 and reports a kink once that slope reaches about 2 for some |A| <= 10.
"""

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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


SCRATCH_OUTPUT_STD = 0.01


def init_params(key: jax.Array, *, ppo_init: bool = True, hidden: int = HIDDEN) -> LPOParams:
    """Hidden layer ~ N(0, 1/8) (LeCun normal). The output layer is 0 when PPO-initialised, so
    the starting drift is PPO's; from scratch it is ~ N(0, 0.01^2): small enough that the
    starting drift passes the sandbox's slope check (see the caveat above; LeCun scale,
    1/sqrt(128), would give slopes of about 5 at r = 1)."""
    hidden_key, output_key = jax.random.split(key)
    w_hidden = jax.random.normal(hidden_key, (NUM_FEATURES, hidden), jnp.float32) / np.sqrt(
        NUM_FEATURES
    )
    if ppo_init:
        w_output = jnp.zeros((hidden,), jnp.float32)
    else:
        w_output = SCRATCH_OUTPUT_STD * jax.random.normal(output_key, (hidden,), jnp.float32)
    return LPOParams(w_hidden, w_output)


def slope_at_one(params: LPOParams, advantage) -> np.ndarray:
    """d net / d r at r = 1 (tanh'(0) = 1): what the shifted ReLU's dead zone has to hide."""
    w, v = np.asarray(params.hidden, np.float64), np.asarray(params.output, np.float64)
    a = np.asarray(advantage, np.float64)[..., None]
    # d features / d r at r = 1: [-1, 0, -A, 0, 1, 0, A, 0]
    return ((-w[0] - a * w[2] + w[4] + a * w[6]) * v).sum(-1)


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
