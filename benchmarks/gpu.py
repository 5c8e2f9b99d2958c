"""The one-call check for a lent GPU: trainer throughput over seed counts, candidates per
GPU-hour at the `paper` budget, and peak device memory, in a few minutes.

    python -m benchmarks.gpu               # on the GPU machine (under 8 minutes on one H100)
    python -m benchmarks.gpu --tiny        # the same path on a CPU, in seconds (CI runs it)

Throughput: env steps per second of one compiled training call of the PPO drift on the
paper budget's meta-train environment (Breakout-MinAtar, its preset), at 1, 64 and 1,024
seeds. Candidates per GPU-hour: a candidate's screening at the paper budget trains the
meta-train environment for its full steps on the budget's 16 seeds; measured on shortened
runs after compiling (throughput is flat in run length once compiled), one candidate per
call against batches of 8 mutation-proposer drifts x 16 seeds run as data, and scaled to the
budget's steps. Compile seconds are printed beside, not folded in: the persistent cache and
exported trainers pay them once per machine. Peak memory is the device's own count (None on
a CPU). Installs nothing; measured, never asserted; ends with one JSON line.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import time

import jax
import jax.numpy as jnp

from benchmarks.campaign import gp_candidates
from sandbox.budgets import get_budget
from sandbox.training.bytecode import expression_bytecode
from sandbox.training.config import preset
from sandbox.training.run import lower_batch, lower_members

FULL = {"env": "Breakout-MinAtar", "seeds": (1, 64, 1024), "steps": 500_000, "members": 8}
TINY = {"env": "CartPole-v1", "seeds": (1, 4), "steps": 4_096, "members": 2}


def timed(lowered) -> tuple[float, float]:
    """(compile seconds, run seconds) of a lowered program, run once after compiling."""
    start = time.perf_counter()
    program = lowered.lowered.compile()
    compiled = time.perf_counter() - start
    return compiled, timed_run(program, *lowered.args)


def timed_run(program, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(program(*args))
    return time.perf_counter() - start


def peak_memory() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="CartPole, tiny runs: a CPU check")
    args = parser.parse_args()
    plan = TINY if args.tiny else FULL
    env, steps = plan["env"], plan["steps"]
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); env {env}")

    # -- trainer throughput over seeds ----------------------------------------------------
    config = preset(env, total_timesteps=steps, monitor=())
    rates = {}
    for seeds in plan["seeds"]:
        compiled, ran = timed(lower_batch(config, seeds=seeds))
        rates[seeds] = config.env_steps * seeds / ran
        print(f"{seeds:>5} seeds: {rates[seeds]:>14,.0f} steps/s  (compile {compiled:.1f} s)")

    # -- candidates per GPU-hour at the paper budget ----------------------------------------
    budget = get_budget("paper")
    paper_seeds = budget.seeds if not args.tiny else 2
    paper_steps = budget.config(env).total_timesteps if not args.tiny else steps
    watched = preset(env, total_timesteps=steps, monitor=("drift",))  # as the sandbox trains
    members = [
        expression_bytecode(code, "drift", ("ratio", "advantage"))
        for code in gp_candidates(plan["members"])
    ]
    scale = paper_steps / watched.env_steps
    # One program for both: a batch trains as many of its member slots as it is told to.
    lowered = lower_members(watched, "drift", members, seeds=paper_seeds)
    program = lowered.lowered.compile()
    keys, lrs, (index, bytecode, _) = lowered.args
    one, batch = (
        timed_run(program, keys, lrs, (index, bytecode, jnp.asarray(k, jnp.int32)))
        for k in (1, len(members))
    )
    per_hour = {"one": 3600 / (one * scale), "batch": 3600 / (batch * scale / len(members))}
    print(
        f"paper budget ({paper_steps:,} steps x {paper_seeds} seeds on {env}): "
        f"{per_hour['one']:,.1f} candidates/h one at a time, "
        f"{per_hour['batch']:,.1f}/h in batches of {len(members)}"
    )
    memory = peak_memory()
    print(f"peak device memory: {memory / 2**30:.2f} GiB" if memory else "peak device memory: n/a")
    print(
        json.dumps(
            {
                "device": jax.devices()[0].device_kind,
                "steps_per_second": {str(k): round(v) for k, v in rates.items()},
                "paper_candidates_per_hour_one": round(per_hour["one"], 2),
                "paper_candidates_per_hour_batched": round(per_hour["batch"], 2),
                "peak_memory_bytes": memory,
            }
        )
    )


if __name__ == "__main__":
    main()
