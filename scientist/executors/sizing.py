"""How many candidates one sandbox run takes when `--batch` is not given.

On a CPU, 8: measured (`python -m benchmarks.campaign`), a batch of 8 already spends most of
its time training, and larger ones only delay a generation's verdicts. On a GPU, the same 8
where it fits, fewer where it does not: the members of a batch train one after another
inside one program (sandbox/training/ppo.py, `batched_members`), so a bigger batch amortises
start-up and compilation further but does not fill the device any more, while the device
holds one member's working set (its seeds' rollouts and optimiser state) plus every
member's outputs (final parameters and learning curves of each seed; a program holds them
for 8 members, training/run.py MEMBER_SLOTS, so up to 8 share one program). A worker's share of
the free memory bounds the batch. The byte counts below are a model of those arrays, not a
measurement; HEADROOM leaves room for XLA's temporaries.
"""

import subprocess
from dataclasses import dataclass

from sandbox.budgets import get_budget
from sandbox.families import SIZES, family_of
from sandbox.training.config import PPOConfig

CPU_BATCH = 8
GPU_BATCH = 8  # members train in sequence on a GPU too: more only delays the verdicts
HEADROOM = 4.0  # the modelled bytes times this must fit (XLA temporaries, fusion buffers)
FLOAT = 4  # bytes


@dataclass(frozen=True)
class BatchChoice:
    size: int
    reason: str  # one line for the campaign's log


def parameter_count(config: PPOConfig) -> int:
    """Weights and biases of the separate actor and critic MLPs (sandbox/training/networks)."""
    obs, _ = SIZES[config.env_id]
    total = 0
    for out in (family_of(config.env_id).head_size(config.env_id), 1):
        widths = [obs, *config.hidden_sizes, out]
        total += sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
    return total


def member_output_bytes(budget: str) -> int:
    """What one member leaves on the device for every environment of the budget: each seed's
    final parameters and its four per-update curves."""
    spec = get_budget(budget)
    total = 0
    for env_id in spec.env_ids:
        config = spec.config(env_id)
        total += spec.seeds * (parameter_count(config) + 4 * config.num_updates) * FLOAT
    return total


def working_set_bytes(budget: str) -> int:
    """The largest working set of one member's training: per seed, a rollout (observations
    and final observations, plus action, log-probability, value, reward and flags), its
    shuffled copy for the minibatches, and parameters with gradients and Adam's two moments."""
    spec = get_budget(budget)
    largest = 0
    for env_id in spec.env_ids:
        config = spec.config(env_id)
        obs, _ = SIZES[env_id]
        rollout = config.batch_size * (2 * obs + 8)
        shuffled = config.batch_size * (obs + 8)
        per_seed = rollout + shuffled + 4 * parameter_count(config)
        largest = max(largest, spec.seeds * per_seed * FLOAT)
    return largest


def gpu_batch(budget: str, free_bytes: int, workers: int) -> BatchChoice:
    share = free_bytes / max(workers, 1)
    fits = int((share / HEADROOM - working_set_bytes(budget)) // member_output_bytes(budget))
    size = max(1, min(GPU_BATCH, fits))
    return BatchChoice(
        size,
        f"batch {size}: GPU with {free_bytes / 2**30:.1f} GiB free, {workers} worker(s); "
        f"a member needs {member_output_bytes(budget) / 2**20:.1f} MiB beside a "
        f"{working_set_bytes(budget) / 2**20:.0f} MiB working set (x{HEADROOM:g} headroom)",
    )


def free_gpu_bytes() -> int | None:
    """Free memory of the first visible NVIDIA GPU, from nvidia-smi (the trusted side never
    initialises JAX on the device: that would take memory from the sandboxes); None without
    one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return int(out.split()[0]) * 2**20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def default_batch(budget: str, workers: int, gpu: bool) -> BatchChoice:
    """The batch size for `--batch` left out, where evaluations of `budget` get a GPU when
    `gpu`."""
    if gpu:
        free = free_gpu_bytes()
        if free is not None:
            return gpu_batch(budget, free, workers)
        return BatchChoice(CPU_BATCH, f"batch {CPU_BATCH}: GPU memory unreadable (nvidia-smi)")
    return BatchChoice(CPU_BATCH, f"batch {CPU_BATCH}: the CPU default")
