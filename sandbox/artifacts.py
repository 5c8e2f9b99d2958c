"""The files a candidate's training run leaves for the scorer, and their validation.

One `.npz` per environment holding the final parameters of every seed (keys are the
parameter paths, leading axis = seed) and the pooled learning curve. It is written by the
untrusted process, so the reader trusts nothing in it: no pickle, a size cap, exactly the
expected keys, shapes and dtypes, and finite values.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import jax
import numpy as np

from sandbox.vocabulary import Status

CURVE_KEY = "learning_curve"
PARAM_PREFIX = "params"
MAX_ARTIFACT_BYTES = 512 * 1024**2


class ArtifactError(ValueError):
    def __init__(self, message: str, status: str = Status.FAILED):
        super().__init__(message)
        self.status = status  # "failed" (missing/malformed) or "nonfinite"


def block_dir(out_dir: Path, block: int, blocks: int) -> Path:
    """Where block `block` of a run's `blocks` blocks of seeds leaves its artifacts: the
    member's own folder when it trains one block, else a folder per block."""
    return Path(out_dir) if blocks == 1 else Path(out_dir) / f"block-{block}"


def artifact_path(out_dir: Path, env_id: str) -> Path:
    return Path(out_dir) / f"{env_id}.npz"


def _named_leaves(tree) -> dict:
    """Each leaf of a parameter tree under its artifact key, in the tree's order."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {PARAM_PREFIX + jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _flatten(params) -> dict[str, np.ndarray]:
    return {key: np.asarray(leaf) for key, leaf in _named_leaves(params).items()}


def write_training_artifact(out_dir: Path, env_id: str, params, curve) -> Path:
    """Called inside the sandbox after training: params have a leading seed axis."""
    path = artifact_path(out_dir, env_id)
    np.savez(path, **_flatten(params), **{CURVE_KEY: np.asarray(curve, dtype=np.float32)})
    return path


def read_training_artifact(out_dir: Path, env_id: str, template, seeds: int):
    """Load and validate against `template` (the parameter tree of one network, its arrays
    or their shapes, built by the trusted side). Returns (params with a leading seed axis,
    learning curve)."""
    path = artifact_path(out_dir, env_id)
    if not path.is_file():
        raise ArtifactError(f"the training run left no artifact for {env_id}")
    if path.stat().st_size > MAX_ARTIFACT_BYTES:
        raise ArtifactError(
            f"the artifact for {env_id} is {path.stat().st_size} bytes, over the limit"
        )
    expected = {key: tuple(leaf.shape) for key, leaf in _named_leaves(template).items()}
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ArtifactError(f"the artifact for {env_id} is unreadable: {error}") from None
    if set(arrays) != set(expected) | {CURVE_KEY}:
        raise ArtifactError(
            f"the artifact for {env_id} has keys {sorted(arrays)}, expected {sorted(expected)}"
        )
    for key, shape in expected.items():
        array = arrays[key]
        if array.dtype != np.float32 or array.shape != (seeds, *shape):
            raise ArtifactError(
                f"{env_id}: {key} is {array.dtype}{list(array.shape)}, "
                f"expected float32{[seeds, *shape]}"
            )
        if not np.isfinite(array).all():
            raise ArtifactError(
                f"{env_id}: the trained parameters contain NaN or inf", status=Status.NONFINITE
            )
    curve = arrays[CURVE_KEY]
    if curve.dtype != np.float32 or curve.ndim != 1:
        raise ArtifactError(f"{env_id}: malformed learning curve")
    leaves = [arrays[key] for key in expected]  # the template's order
    return jax.tree.unflatten(jax.tree.structure(template), leaves), curve


def write_atomically(path: Path, data: bytes) -> None:
    """For files shared between runs (caches): a concurrent run reads a whole file or none.
    The partial file's name is unique (not the pid: sandboxes in their own PID namespaces
    share pids, and two of them once renamed each other's partial file away)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # as a plain write leaves it: other runs read it
            file.write(data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    Path(path).write_text(json.dumps(data))


def append_stage(out_dir: Path, record: dict) -> None:
    with open(Path(out_dir) / "stages.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
