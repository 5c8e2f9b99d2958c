"""Behaviour signatures: what a candidate computes on a fixed set of inputs, rounded and
hashed, so that two sources that behave the same are caught before they are trained twice.

Computed inside the sandbox (it runs candidate code); the trusted side only compares the
hashes, so a forged signature can at worst cost its own candidate an evaluation.
"""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

SIGNIFICANT_DIGITS = 4


def _drift_grid():
    ratio = np.concatenate([np.geomspace(0.25, 4.0, 12), [0.9, 0.97, 1.0, 1.03, 1.1]])
    advantage = np.array([-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0])
    r, a = np.meshgrid(ratio, advantage)
    return r.ravel().astype(np.float32), a.ravel().astype(np.float32)


def _value_loss_grid():
    prediction = np.linspace(-4.0, 4.0, 17)
    target = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    p, t = np.meshgrid(prediction, target)
    return p.ravel().astype(np.float32), t.ravel().astype(np.float32)


def _optimizer_updates(make_optimizer):
    """Three updates on fixed gradients of a small parameter tree."""
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(4)}
    tx = make_optimizer(lambda count: 1e-2 * (1.0 - count / 1000.0), 0.5)
    state = tx.init(params)
    outputs = []
    for step in range(3):
        grads = jax.tree.map(lambda p: jnp.cos(p * (step + 1.0)) * 0.3, params)
        updates, state = tx.update(grads, state, params)
        outputs += [np.asarray(u, dtype=np.float64).ravel() for u in jax.tree.leaves(updates)]
    return np.concatenate(outputs)


def behaviour_values(slot: str, function) -> np.ndarray:
    if slot == "drift":
        return np.asarray(function(*map(jnp.asarray, _drift_grid())), dtype=np.float64)
    if slot == "value_loss":
        return np.asarray(function(*map(jnp.asarray, _value_loss_grid())), dtype=np.float64)
    if slot == "make_optimizer":
        return _optimizer_updates(function)
    raise ValueError(f"no behaviour signature for slot {slot!r}")


def behaviour_signature(slot: str, function) -> str:
    """A hex digest of the outputs rounded to 4 significant digits (non-finite values kept
    as such). -0.0 and 0.0 are the same behaviour."""
    values = behaviour_values(slot, function).ravel()
    text = ",".join("0" if v == 0 else f"{v:.{SIGNIFICANT_DIGITS}g}" for v in values.tolist())
    return hashlib.sha256(f"{slot}:{values.size}:{text}".encode()).hexdigest()[:32]
