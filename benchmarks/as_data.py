"""What running a candidate as data saves: sandbox evaluations of the same candidates as data
and, with one statement added (so no longer exactly an expression or a rendering), as code,
side by side in one run on one machine.

    python -m benchmarks.as_data
    python -m benchmarks.as_data --rounds 3 --budget smoke

The candidates: the DPO baseline (an expression: bytecode) and an LPO network as the ES
baseline renders it (a PPO-initialised network moved off PPO). Each round evaluates each
candidate alone (`scientist evaluate`'s path: static checks, the sandboxed stages, the
scorer) in the process sandbox, as data then as code. The first round as data may compile
into an empty program cache; later rounds find it, as every later batch of a campaign does.
Code compiles every time. Measured, never asserted; the last line is the figures as JSON.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import statistics
import time

import jax

from harness.cascade import data_kind, evaluate_candidate
from sandbox.tasks import load_task
from sandbox.training.lpo_network import LPOParams, render_lpo_candidate
from scientist.es.lpo import init_params

TASK = "mirror_drift"
AS_CODE = "\nif True:  # a statement no expression or rendering has: loaded as code\n    pass\n"


def network_module() -> str:
    params = init_params(jax.random.key(0))
    moved = LPOParams(
        params.hidden,
        params.output + 0.01 * jax.random.normal(jax.random.key(1), params.output.shape),
    )
    return render_lpo_candidate(moved, note="benchmarks.as_data")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", default="smoke")
    args = parser.parse_args()
    candidates = {
        "expression (DPO)": load_task(TASK).baseline_source("dpo"),
        "LPO network": network_module(),
    }
    seconds: dict[str, dict[str, list[float]]] = {
        name: {"data": [], "code": []} for name in candidates
    }
    for round_ in range(args.rounds):
        for name, source in candidates.items():
            for form, text in (("data", source), ("code", source + AS_CODE)):
                assert (data_kind(TASK, text) is not None) == (form == "data"), (name, form)
                start = time.perf_counter()
                result = evaluate_candidate(TASK, text, args.budget, sandbox="process")
                took = time.perf_counter() - start
                seconds[name][form].append(took)
                print(
                    f"round {round_ + 1}: {name} as {form}: {result.status}, "
                    f"fitness {result.fitness}, {took:.1f} s",
                    flush=True,
                )
    print()
    print(
        f"{'candidate':<20}{'as data, s':>14}{'as code, s':>14}{'ratio':>8}"
        f"   (median of {args.rounds} rounds, {args.budget} budget)"
    )
    figures = {}
    for name, forms in seconds.items():
        data, code = (statistics.median(forms[f]) for f in ("data", "code"))
        figures[name] = {
            "data_seconds": round(data, 1),
            "code_seconds": round(code, 1),
            "ratio": round(code / data, 2),
        }
        print(f"{name:<20}{data:>14.1f}{code:>14.1f}{code / data:>8.2f}")
    print(json.dumps({"budget": args.budget, "rounds": args.rounds, "candidates": figures}))


if __name__ == "__main__":
    main()
