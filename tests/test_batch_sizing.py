"""The batch size chosen where `--batch` is not given (scientist/executors/sizing.py), and the
environment a sandbox gets on a GPU.

No GPU runs here: the free-memory reading is tested against a stand-in `nvidia-smi` on PATH
that prints what the real one prints for `--query-gpu=memory.free --format=csv,noheader,nounits`
(one line per device, MiB). The memory model's inputs are checked against the real networks
and environments."""

import os
import stat

import jax
import jax.numpy as jnp
import pytest

from harness.backends.base import platform_env
from sandbox.budgets import BUDGETS
from sandbox.families import SIZES, SUPPORTED_ENVS, make_env
from sandbox.training.config import preset
from sandbox.training.ppo import make_network
from scientist.executors.base import LocalExecutor
from scientist.executors.sizing import (
    CPU_BATCH,
    GPU_BATCH,
    default_batch,
    free_gpu_bytes,
    gpu_batch,
    member_output_bytes,
    parameter_count,
    working_set_bytes,
)


@pytest.mark.parametrize("env_id", SUPPORTED_ENVS)
def test_the_size_table_and_parameter_count_match_gymnax_and_the_network(env_id):
    spec = make_env(env_id)
    assert SIZES[env_id] == (int(jnp.prod(jnp.array(spec.obs_shape))), spec.action_size)
    config = preset(env_id)
    params = make_network(config, spec).init(jax.random.key(0), jnp.zeros((1, *spec.obs_shape)))
    assert parameter_count(config) == sum(x.size for x in jax.tree.leaves(params))


def test_a_gpu_batch_is_what_fits_in_a_workers_share_of_free_memory():
    gib = 2**30
    big = gpu_batch("paper", 80 * gib, workers=2)
    assert big.size == GPU_BATCH and "80.0 GiB free" in big.reason
    # A small device shared by two workers: the working set alone nearly fills the share.
    small = gpu_batch("paper", 9 * gib, workers=2)
    assert 1 <= small.size < GPU_BATCH
    assert gpu_batch("paper", 1 * gib, workers=4).size == 1  # never zero
    sizes = [gpu_batch("paper", g * gib, workers=2).size for g in range(1, 40)]
    assert sizes == sorted(sizes)  # more memory never means a smaller batch
    # The model grows with what a budget trains: seeds, steps, observation size.
    assert (
        member_output_bytes("smoke") < member_output_bytes("quick") < member_output_bytes("paper")
    )
    assert working_set_bytes("smoke") < working_set_bytes("quick") < working_set_bytes("paper")


def _stand_in_nvidia_smi(directory, output: str, exit_code: int = 0) -> None:
    tool = directory / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {exit_code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def test_free_memory_is_read_from_nvidia_smi_and_a_missing_or_broken_one_falls_back(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    _stand_in_nvidia_smi(tmp_path, "81920\\n40960\\n")  # two devices: the first visible one
    assert free_gpu_bytes() == 80 * 2**30
    choice = default_batch("paper", workers=1, gpu=True)
    assert choice.size == GPU_BATCH and "GPU with 80.0 GiB free" in choice.reason
    _stand_in_nvidia_smi(tmp_path, "NVIDIA-SMI has failed\\n", exit_code=9)
    assert free_gpu_bytes() is None
    fallback = default_batch("paper", workers=1, gpu=True)
    assert fallback.size == CPU_BATCH and "unreadable" in fallback.reason


def test_without_a_gpu_the_batch_is_the_cpu_default():
    for budget in BUDGETS:
        assert default_batch(budget, workers=2, gpu=False).size == CPU_BATCH
    if not os.path.exists("/dev/nvidia0"):
        assert LocalExecutor().batch_choice("paper", 2).size == CPU_BATCH


def test_a_sandbox_on_a_gpu_allocates_as_it_goes_and_one_without_stays_on_the_cpu():
    assert platform_env(False) == {"JAX_PLATFORMS": "cpu"}
    assert platform_env(True) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
