"""The scorer trusts nothing the sandboxed run wrote: artifacts are validated, and the
evaluation seed is drawn at score time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.artifacts import (
    ArtifactError,
    artifact_path,
    read_training_artifact,
    write_atomically,
    write_training_artifact,
)
from sandbox.families import make_env
from sandbox.training.config import preset
from sandbox.training.ppo import make_network

SEEDS = 2


@pytest.fixture
def template():
    config = preset("CartPole-v1")
    spec = make_env("CartPole-v1")
    return make_network(config, spec).init(jax.random.key(0), jnp.zeros((1, *spec.obs_shape)))


def batched(template, value=None):
    return jax.tree.map(
        lambda x: jnp.stack([x] * SEEDS) if value is None else jnp.full((SEEDS, *x.shape), value),
        template,
    )


def test_valid_artifact_round_trips(tmp_path, template):
    write_training_artifact(tmp_path, "CartPole-v1", batched(template), np.arange(5.0))
    params, curve = read_training_artifact(tmp_path, "CartPole-v1", template, SEEDS)
    assert jax.tree.structure(params) == jax.tree.structure(template)
    assert curve.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_missing_forged_or_malformed_artifacts_are_refused(tmp_path, template):
    with pytest.raises(ArtifactError, match="no artifact"):
        read_training_artifact(tmp_path, "CartPole-v1", template, SEEDS)

    path = artifact_path(tmp_path, "CartPole-v1")
    np.savez(
        path, learning_curve=np.zeros(3, np.float32), fitness=np.array([1e9])
    )  # a forged score
    with pytest.raises(ArtifactError, match="keys"):
        read_training_artifact(tmp_path, "CartPole-v1", template, SEEDS)

    np.savez(path, learning_curve=np.array([object()], dtype=object))  # pickle payload
    with pytest.raises(ArtifactError):
        read_training_artifact(tmp_path, "CartPole-v1", template, SEEDS)

    path.write_bytes(b"not a zip file")
    with pytest.raises(ArtifactError, match="unreadable"):
        read_training_artifact(tmp_path, "CartPole-v1", template, SEEDS)

    write_training_artifact(tmp_path, "CartPole-v1", batched(template), np.zeros(3))
    with pytest.raises(ArtifactError, match="expected float32"):
        read_training_artifact(tmp_path, "CartPole-v1", template, SEEDS + 1)  # wrong seed count

    write_training_artifact(tmp_path, "CartPole-v1", batched(template, np.nan), np.zeros(3))
    with pytest.raises(ArtifactError) as error:
        read_training_artifact(tmp_path, "CartPole-v1", template, SEEDS)
    assert error.value.status == "nonfinite"


def test_cache_writers_at_once_never_take_each_others_partial_file(tmp_path):
    """Runs that share a cache file (an exported trainer, a check report) write it at the
    same moment; inside sandboxes in their own PID namespaces they even share a pid, as the
    threads here do. Every write lands whole and none fails."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "cache" / "program"
    contents = [bytes([i]) * 200_000 for i in range(8)]

    def write(data: bytes) -> None:
        for _ in range(20):
            write_atomically(path, data)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, contents))
    assert path.read_bytes() in contents
    assert [p.name for p in path.parent.iterdir()] == ["program"]  # no partial file left
