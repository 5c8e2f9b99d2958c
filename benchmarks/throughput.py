"""Training throughput: compile time and environment steps per second of one compiled call.

    python -m benchmarks.throughput                 # CartPole 1/8/32 seeds, Breakout 1/4 seeds
    python -m benchmarks.throughput --env CartPole-v1 --seeds 8 --timesteps 500000

Prints one row per configuration. Measured, never asserted: see the closing notes for figures.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json

from sandbox.training.config import preset
from sandbox.training.run import train_batch

DEFAULT_CASES = [
    ("CartPole-v1", 1, 500_000),
    ("CartPole-v1", 8, 500_000),
    ("CartPole-v1", 32, 500_000),
    ("Breakout-MinAtar", 1, 1_000_000),
    ("Breakout-MinAtar", 4, 1_000_000),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=500_000)
    args = parser.parse_args()
    cases = [(args.env, args.seeds, args.timesteps)] if args.env else DEFAULT_CASES

    print(
        f"{'env':<22}{'seeds':>6}{'steps/seed':>12}{'compile s':>11}"
        f"{'train s':>9}{'env steps/s':>13}"
    )
    rows: list[dict] = []
    for env_id, seeds, timesteps in cases:
        batch = train_batch(preset(env_id, total_timesteps=timesteps), seeds=seeds)
        rows.append(
            {
                "env": env_id,
                "seeds": seeds,
                "steps_per_seed": int(batch.config.env_steps),
                "compile_s": round(batch.compile_seconds, 2),
                "train_s": round(batch.train_seconds, 2),
                "env_steps_per_second": round(batch.env_steps / batch.train_seconds, 1),
            }
        )
        print(
            f"{env_id:<22}{seeds:>6}{batch.config.env_steps:>12,}{batch.compile_seconds:>11.1f}"
            f"{batch.train_seconds:>9.1f}{batch.env_steps / batch.train_seconds:>13,.0f}",
            flush=True,
        )
    print(json.dumps({"cases": rows}))


if __name__ == "__main__":
    main()
