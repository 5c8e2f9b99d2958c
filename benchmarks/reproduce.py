"""The DPO paper's comparison at our budgets: PPO, DPO and the zero drift trained on the same
seeds (paired), with IQMs, honest intervals and paired differences from PPO.

    python -m benchmarks.reproduce --budget quick                  # the four MinAtar games
    python -m benchmarks.reproduce --budget quick --seeds 8 --envs Breakout-MinAtar
    python -m benchmarks.reproduce --budget smoke --seeds 64 --save scores.json

Each drift trains `--seeds` runs per environment in one vmapped call, from the same seed keys
and evaluated on the same episodes, so run i of every drift saw the same luck. Scores are
normalised by the budget's references (0 = random, 1 = the budget's PPO reference). Nothing
here runs candidate code: the drifts are the task's own baselines, trained in-process.
`--save` writes the per-seed scores (with the command that made them) as JSON.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbox.budgets import BUDGET_NAMES, Budget, get_budget
from sandbox.fitness import MIN_SEEDS_PER_ENV, MIN_VALUES, normalise
from sandbox.tasks import load_baseline
from sandbox.training.ppo import Components
from sandbox.training.run import evaluate_batch, train_batch
from scientist.report.reproduction import REFERENCE, table

MINATAR = ("Breakout-MinAtar", "SpaceInvaders-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar")
DRIFTS = ("ppo", "dpo", "zero")


@dataclass(frozen=True)
class Scores:
    """Per-seed normalised scores: drift -> env -> [seeds]."""

    budget: str
    seeds: int
    seed: int
    by_drift: dict[str, dict[str, list[float]]]


def train_scores(
    budget: Budget, envs: tuple[str, ...], drifts: tuple[str, ...], seeds: int, seed: int
) -> Scores:
    by_drift: dict[str, dict[str, list[float]]] = {d: {} for d in drifts}
    for env_id in envs:
        reference = budget.env(env_id)
        config = budget.config(env_id, monitor=())  # trusted baselines: nothing to watch
        for drift in drifts:
            start = time.perf_counter()
            batch = train_batch(
                config,
                Components(drift=load_baseline("mirror_drift", drift)),
                seeds=seeds,
                seed=seed,
            )
            returns = evaluate_batch(batch, eval_seed=seed + 1_000_003)[0]
            scores = normalise(
                returns, random_return=reference.random_return, ppo_return=reference.ppo_return
            )
            by_drift[drift][env_id] = [float(x) for x in scores]
            print(
                f"  {env_id} {drift}: {seeds} seeds x {config.env_steps:,} steps in "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return Scores(budget.name, seeds, seed, by_drift)


def lines(scores: Scores) -> list[str]:
    """The table as text: per environment and over all of them, each drift's IQM and its
    paired difference from PPO, each with its interval or the reason it has none."""
    drifts = list(scores.by_drift)
    rows = table(scores.by_drift)
    header = ("environment", *(f"{d} IQM" for d in drifts), *(f"{d} - ppo" for d in drifts[1:]))
    cells = [header] + [
        (
            r.label,
            *(r.iqm[d].describe(2) for d in drifts),
            *(r.versus[d].describe(2) for d in drifts[1:]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="quick", help=BUDGET_NAMES)
    parser.add_argument("--envs", nargs="+", help="default: the budget's MinAtar games, else all")
    parser.add_argument("--drifts", nargs="+", default=list(DRIFTS), choices=DRIFTS)
    parser.add_argument("--seeds", type=int, help="runs per drift and env (default: budget's)")
    parser.add_argument("--seed", type=int, default=0, help="training seed shared by all drifts")
    parser.add_argument("--save", type=Path, help="write the per-seed scores here (JSON)")
    args = parser.parse_args(argv)
    if REFERENCE not in args.drifts:
        parser.error("--drifts must include ppo, the reference of the paired differences")
    budget = get_budget(args.budget)
    envs = tuple(args.envs or [e for e in budget.env_ids if e in MINATAR] or budget.env_ids)
    seeds = args.seeds or budget.seeds
    drifts = (REFERENCE, *(d for d in args.drifts if d != REFERENCE))
    scores = train_scores(budget, envs, drifts, seeds, args.seed)
    print(
        f"{budget.name} budget, {seeds} seeds per drift and environment, paired (same seed keys "
        f"and evaluation episodes); normalised scores (1 = the budget's PPO reference); "
        f"intervals: 95 % stratified bootstrap, shown from {MIN_SEEDS_PER_ENV} seeds per "
        f"environment and {MIN_VALUES} in all"
    )
    for line in lines(scores):
        print(line)
    if args.save:
        record = {
            "command": (  # what made the numbers (where they were saved does not matter)
                f"python -m benchmarks.reproduce --budget {budget.name} --seeds {seeds} "
                f"--seed {args.seed} --drifts {' '.join(drifts)} --envs {' '.join(envs)}"
            ),
            "budget": scores.budget,
            "seeds": scores.seeds,
            "seed": scores.seed,
            "scores": scores.by_drift,
        }
        args.save.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
