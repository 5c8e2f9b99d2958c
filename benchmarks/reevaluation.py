"""Re-evaluation cost: fresh blocks of seeds trained one sandbox run per block (as before)
against all blocks in one run (each compiled program re-run with each block's keys), side by
side in one process, with a check that both give the same numbers.

    python -m benchmarks.reevaluation                    # PPO, DPO, zero; 4 blocks; smoke
    python -m benchmarks.reevaluation --blocks 8 --budget smoke

Measured, never asserted: see the closing notes for figures.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import time

from harness.cascade import evaluate_batch
from sandbox.budgets import get_budget
from sandbox.tasks import load_task
from scientist.search.seed_blocks import seed_block

TASK = "mirror_drift"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--budget", default="smoke")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    task = load_task(TASK)
    sources = [task.baseline_source(name) for name in task.baseline_names]
    runs = get_budget(args.budget).seeds
    blocks = [seed_block(b, args.seed, args.seed + 7, runs) for b in range(1, args.blocks + 1)]
    pairs = [b.seeds for b in blocks]

    def run(first, further=()):
        return evaluate_batch(
            TASK,
            sources,
            args.budget,
            sandbox="process",
            seed=first[0],
            eval_seed=first[1],
            further_blocks=further,
        )

    start = time.monotonic()
    apart = [run(pair) for pair in pairs]
    apart_seconds = time.monotonic() - start
    start = time.monotonic()
    together = run(pairs[0], pairs[1:])
    together_seconds = time.monotonic() - start
    same = all(
        apart[b][m].per_env == together[m].blocks[b].per_env
        for b in range(len(pairs))
        for m in range(len(sources))
    )
    print(
        f"{len(sources)} baselines ({', '.join(task.baseline_names)}) x {len(pairs)} blocks "
        f"of seeds, budget {args.budget}"
    )
    print(f"{'one sandbox run per block':<32}{apart_seconds:>8.1f} s")
    print(f"{'all blocks in one run':<32}{together_seconds:>8.1f} s")
    print(f"{'ratio':<32}{apart_seconds / together_seconds:>8.2f}x")
    print(f"same numbers per block: {same}")
    figures = {
        "baselines": len(sources),
        "blocks": len(pairs),
        "budget": args.budget,
        "per_block_s": round(apart_seconds, 2),
        "one_run_s": round(together_seconds, 2),
        "speedup": round(apart_seconds / together_seconds, 3),
        "same_numbers": same,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
