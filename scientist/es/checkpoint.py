"""ES state and network weights as npz bytes (numpy.savez, loaded with allow_pickle=False).

The state is a pytree (evosax's OpenES state with its optax optimizer state): its leaves are
stored in flattening order and put back into the structure of a freshly initialised state,
so a checkpoint only restores into the strategy that wrote it (same population size,
network size and optimizer); anything else is refused with the first mismatch named.
"""

import io

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.training.lpo_network import LPOParams


class CheckpointError(ValueError):
    pass


def _to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def state_to_bytes(state) -> bytes:
    return _to_bytes(
        {f"leaf_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
    )


def state_from_bytes(data: bytes, template):
    """The state stored in `data`, in the pytree structure of `template` (an initial state)."""
    leaves, treedef = jax.tree.flatten(template)
    stored = _from_bytes(data)
    if len(stored) != len(leaves):
        raise CheckpointError(
            f"the checkpoint has {len(stored)} arrays; this ES state has {len(leaves)}"
        )
    restored = []
    for i, leaf in enumerate(leaves):
        value = stored[f"leaf_{i:04d}"]
        if value.shape != np.shape(leaf):
            raise CheckpointError(
                f"array {i} of the checkpoint has shape {value.shape}, expected {np.shape(leaf)}: "
                "it was written with different ES settings"
            )
        restored.append(jnp.asarray(value))
    return jax.tree.unflatten(treedef, restored)


def params_to_bytes(params: LPOParams) -> bytes:
    return _to_bytes(
        {
            "hidden": np.asarray(params.hidden, np.float32),
            "output": np.asarray(params.output, np.float32),
        }
    )


def params_from_bytes(data: bytes) -> LPOParams:
    arrays = _from_bytes(data)
    return LPOParams(arrays["hidden"], arrays["output"])
