"""Evaluation throughput: candidates per hour and the share of sandbox time spent training,
screening (a campaign's first look at a proposal: its meta-train environments) against the
full evaluation (every environment of the split), one candidate per sandbox run against
batches, side by side in one run.

    python -m benchmarks.campaign                       # 16 GP and 16 LLM-code, discovery
    python -m benchmarks.campaign --candidates 32 --batches 1 16 32 --rounds 2
    python -m benchmarks.campaign --candidates 16 --batches 8 --workers 1 2

GP candidates come from the mutation proposer (seeded from the task's baselines); LLM-code
candidates are the recorded replies below, code an LLM wrote for this task. The modes
alternate on the same candidates, so machine noise hits both alike; ratios hold, absolute
times do not. `--workers W` runs W batches at once, as a campaign's `--workers` does
(default 1). The training share is the sum of the batches' training seconds over the wall
time, so with W > 1 it can exceed 100 %. Measured, never asserted. The last line is JSON:
the best screening rate of each kind of candidate and the training share where GP's was met.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

from harness.cascade import evaluate_batch
from sandbox.tasks import load_task
from sandbox.vocabulary import Fidelity, Status
from scientist.proposers.base import ParentView, ProposalRequest
from scientist.proposers.mutation import MutationProposer

TASK = "mirror_drift"
TRAINED = re.compile(r"trained (\S+): \d+ steps in ([0-9.]+) s")

# Recorded replies (the code blocks of model answers to the mirror_drift prompt).
LLM_CODE = [
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    return 0.5 * jnp.abs(advantage) * (ratio - 1.0) ** 2\n",
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    log_r = jnp.log(ratio)\n    return jnp.abs(advantage) * (ratio - 1.0 - log_r)\n",
    "import jax\nimport jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    excess = jax.nn.relu(jnp.abs(ratio - 1.0) - 0.2)\n"
    "    return jnp.abs(advantage) * excess ** 2 + 0.1 * (ratio - 1.0) ** 2\n",
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    scale = jnp.where(advantage > 0, 1.0, 2.0)\n"
    "    return scale * jnp.abs(advantage) * (jnp.sqrt(ratio) - 1.0) ** 2\n",
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    d = ratio - 1.0\n    return jnp.abs(advantage) * d * jnp.tanh(2.0 * d)\n",
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    return jnp.abs(advantage) * (ratio * jnp.log(ratio) - ratio + 1.0)\n",
    "import jax\nimport jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    d = ratio - 1.0\n"
    "    return jax.nn.softplus(jnp.abs(advantage)) * d ** 2 / (1.0 + d ** 2)\n",
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    d = jnp.abs(ratio - 1.0)\n"
    "    return 0.25 * (jnp.abs(advantage) + 1.0) * d ** 2 * (1.0 + d)\n",
]


def gp_candidates(count: int, seed: int = 0) -> list[str]:
    task = load_task(TASK)
    proposer = MutationProposer(task)
    parents = [
        ParentView(i, task.baseline_source(name), Status.OK, 1.0 - 0.1 * i, "baseline")
        for i, name in enumerate(task.baseline_names)
    ]
    rng, codes = random.Random(seed), []
    while len(codes) < count:
        request = ProposalRequest(
            task=task,
            island=0,
            generation=1,
            parents=rng.sample(parents, 2),
            inspirations=[],
            failures=[],
            rng=rng,
        )
        code = proposer.propose(request).code
        if code is not None:  # None: no variation passed the pre-screen this time
            codes.append(code)
    return codes


def measure(
    sources: list[str],
    batch: int,
    budget: str,
    workers: int = 1,
    fidelity: Fidelity = Fidelity.SCREEN,
) -> dict:
    def run(group: list[str]) -> tuple[list[str], float]:
        evaluations = evaluate_batch(TASK, group, budget, sandbox="process", fidelity=fidelity)
        # Each member's log names the batch's training seconds per environment: count once.
        trained = next((e for e in evaluations if e.status == Status.OK), None)
        seconds = 0.0
        if trained is not None:
            seconds = sum(float(s) for _, s in TRAINED.findall(trained.log_tail))
        return [e.status for e in evaluations], seconds

    start, training, statuses = time.monotonic(), 0.0, []
    groups = [sources[i : i + batch] for i in range(0, len(sources), batch)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for group_statuses, seconds in pool.map(run, groups):
            statuses += group_statuses
            training += seconds
    wall = time.monotonic() - start
    return {
        "per_hour": len(sources) / wall * 3600,
        "wall": wall,
        "training": training / wall,
        "ok": sum(s == Status.OK for s in statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[16], help="batch sizes; 1 = one at a time"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="batches at once")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--budget", default="discovery")
    parser.add_argument(
        "--fidelities",
        nargs="+",
        default=[Fidelity.SCREEN, Fidelity.FULL],
        type=Fidelity,
        help="screen (a campaign's first evaluation) and full (every environment)",
    )
    args = parser.parse_args()
    sets = {
        "GP": gp_candidates(args.candidates),
        "LLM code": (LLM_CODE * (args.candidates // len(LLM_CODE) + 1))[: args.candidates],
    }
    print(f"budget {args.budget}, process sandbox")
    print(
        f"{'candidates':<11}{'fidelity':<9}{'mode':<15}{'workers':>8}{'round':>6}{'n':>4}"
        f"{'ok':>4}{'wall s':>9}{'per hour':>10}{'training':>10}"
    )
    rows = []
    for name, sources in sets.items():
        for round_ in range(1, args.rounds + 1):
            for workers in args.workers:
                for batch in args.batches:
                    for fidelity in args.fidelities:  # alternating, so noise hits both alike
                        mode = "one at a time" if batch == 1 else f"batch {batch}"
                        m = measure(sources, batch, args.budget, workers, fidelity)
                        rows.append({"kind": name, "fidelity": fidelity, **m})
                        print(
                            f"{name:<11}{fidelity:<9}{mode:<15}{workers:>8}{round_:>6}"
                            f"{len(sources):>4}{m['ok']:>4}{m['wall']:>9.1f}"
                            f"{m['per_hour']:>10.0f}{m['training']:>10.0%}",
                            flush=True,
                        )
    print(json.dumps(headline(rows, args.budget)))


def headline(rows: list[dict], budget: str) -> dict:
    """The best rate per kind and fidelity (with GP's training share at its best screen)."""

    def best(kind: str, fidelity: Fidelity) -> dict | None:
        mine = [r for r in rows if r["kind"] == kind and r["fidelity"] == fidelity]
        return max(mine, key=lambda r: r["per_hour"]) if mine else None

    def rate(row) -> float | None:
        return None if row is None else round(row["per_hour"], 1)

    gp_screen = best("GP", Fidelity.SCREEN)
    return {
        "budget": budget,
        "gp_screened_per_hour": rate(gp_screen),
        "llm_screened_per_hour": rate(best("LLM code", Fidelity.SCREEN)),
        "training_share": None if gp_screen is None else round(gp_screen["training"], 3),
        "gp_full_per_hour": rate(best("GP", Fidelity.FULL)),
        "llm_full_per_hour": rate(best("LLM code", Fidelity.FULL)),
    }


if __name__ == "__main__":
    main()
