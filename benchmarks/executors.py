"""Evaluation throughput of the local and Ray executors on this machine.

    python -m benchmarks.executors [--evaluations 4] [--workers 1 2] [--executors local ray]
                                   [--budget smoke] [--sandbox process] [--ray-address ADDR]

Runs the same batch (PPO's drift, one seed per evaluation so no two are alike) through each
executor with W evaluations in flight, as the campaign loop does, and prints wall time,
evaluations per minute, the executor's overhead per evaluation (wall time beyond the
sandbox's own, per evaluation in flight) and the speed-up over one worker. Without
--ray-address Ray starts a cluster on this machine (one CPU per evaluation).
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from harness.cascade import EvaluationRequest
from sandbox.tasks import load_task
from sandbox.vocabulary import ExecutorName, Sandbox, Status
from scientist.executors.registry import get_executor


def run_batch(
    executor, source: str, n: int, workers: int, budget: str, sandbox_name: str
) -> tuple[float, list]:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        evaluations = list(
            pool.map(
                lambda seed: executor(
                    EvaluationRequest("mirror_drift", [source], budget, sandbox_name, seed)
                )[0],
                range(n),
            )
        )
    return time.monotonic() - start, evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--executors",
        nargs="+",
        default=[ExecutorName.LOCAL, ExecutorName.RAY],
        choices=[ExecutorName.LOCAL, ExecutorName.RAY],
    )
    parser.add_argument("--budget", default="smoke")
    parser.add_argument("--sandbox", default=Sandbox.PROCESS)
    parser.add_argument("--ray-address", default=None)
    args = parser.parse_args()
    source = load_task("mirror_drift").baseline_source("ppo")
    print(
        f"{args.evaluations} evaluations of PPO's drift, budget {args.budget}, "
        f"sandbox {args.sandbox}"
    )
    print(
        f"{'executor':>8} {'workers':>7} {'wall s':>8} {'evals/min':>9} {'sandbox s/eval':>14} "
        f"{'overhead s/eval':>15} {'speed-up':>8}"
    )
    runs: list[dict] = []
    for name in args.executors:
        executor = get_executor(name, ray_address=args.ray_address)
        try:
            run_batch(
                executor, source, 1, 1, args.budget, args.sandbox
            )  # warm: compilation cache, Ray workers
            single = None
            for workers in args.workers:
                wall, evaluations = run_batch(
                    executor, source, args.evaluations, workers, args.budget, args.sandbox
                )
                bad = [e.status for e in evaluations if e.status != Status.OK]
                if bad:
                    raise SystemExit(f"{name}: evaluations failed: {bad}")
                inside = statistics.mean(e.seconds for e in evaluations)
                single = single or wall
                # Wall time per evaluation, times the evaluations in flight, beyond the cascade's
                # own time.
                overhead = wall * min(workers, args.evaluations) / args.evaluations - inside
                print(
                    f"{name:>8} {workers:>7} {wall:>8.1f} {60 * args.evaluations / wall:>9.2f} "
                    f"{inside:>14.1f} "
                    f"{overhead:>15.2f} {single / wall:>8.2f}"
                )
                runs.append(
                    {
                        "executor": str(name),
                        "workers": workers,
                        "wall_s": round(wall, 2),
                        "evals_per_minute": round(60 * args.evaluations / wall, 3),
                        "sandbox_s_per_eval": round(inside, 2),
                        "overhead_s_per_eval": round(overhead, 3),
                        "speedup": round(single / wall, 3),
                    }
                )
        finally:
            executor.close()
    best: dict[str, float] = {}
    for run in runs:
        best[run["executor"]] = max(best.get(run["executor"], 0.0), run["evals_per_minute"])
    figures = {
        "evaluations": args.evaluations,
        "budget": args.budget,
        "sandbox": str(args.sandbox),
        "best_evals_per_minute": best,
        "runs": runs,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
