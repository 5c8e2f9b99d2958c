"""What the runtime monitor costs: training throughput with the pieces' monitors on and off,
side by side, alternating runs of the same compiled configurations in one process.

    python -m benchmarks.monitor
    python -m benchmarks.monitor --rounds 3 --cases cartpole-8

As in the sandbox evaluating a drift candidate, "on" watches the drift alone (the other plug
points hold trusted baselines): each minibatch's drift call also evaluates its probes, a
quarter of the minibatch three times over, inside the compiled run
(sandbox/training/monitor.py). The `gp-8` case trains 8 mutation-proposer drifts x 2
seeds as one bytecode batch through the expression interpreter, as the sandbox trains a GP
batch at the smoke budget. `--all` watches every plug point with a monitor. Measured, never
asserted.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json

from benchmarks.campaign import gp_candidates
from benchmarks.trainer import steps_per_second
from sandbox.training.bytecode import expression_bytecode
from sandbox.training.config import PPOConfig, preset
from sandbox.training.run import lower_batch, lower_members

# name: (env, seeds, total timesteps, GP expressions trained as one batch; 0: the PPO drift)
CASES = {
    "cartpole-1": ("CartPole-v1", 1, 200_000, 0),
    "cartpole-8": ("CartPole-v1", 8, 200_000, 0),
    "breakout-1": ("Breakout-MinAtar", 1, 300_000, 0),
    "breakout-8": ("Breakout-MinAtar", 8, 100_000, 0),
    "gp-8": ("CartPole-v1", 2, 100_000, 8),
}


def compiled(env_id: str, seeds: int, timesteps: int, expressions: int, monitor: tuple[str, ...]):
    config = preset(env_id, total_timesteps=timesteps, monitor=monitor)
    if expressions:
        members = [
            expression_bytecode(code, "drift", ("ratio", "advantage"))
            for code in gp_candidates(expressions)
        ]
        lowered = lower_members(config, "drift", members, seeds=seeds)
    else:
        lowered = lower_batch(config, seeds=seeds)
    program = lowered.lowered.compile()
    return lambda: program(*lowered.args), config.env_steps * seeds * max(expressions, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--all", action="store_true", help="watch every plug point")
    args = parser.parse_args()
    watched = PPOConfig.monitor if args.all else ("drift",)
    print(f"{'case':<13}{'round':>6}{'monitor on':>13}{'off':>13}{'on/off':>8}")
    ratios = {}
    for name in args.cases:
        runs = {on: compiled(*CASES[name], monitor=watched if on else ()) for on in (True, False)}
        for round_ in range(1, args.rounds + 1):
            order = (True, False) if round_ % 2 else (False, True)  # who goes first swaps
            rate = {on: steps_per_second(*runs[on]) for on in order}
            ratios.setdefault(name, []).append(round(rate[True] / rate[False], 3))
            print(
                f"{name:<13}{round_:>6}{rate[True]:>13,.0f}{rate[False]:>13,.0f}"
                f"{rate[True] / rate[False]:>8.3f}",
                flush=True,
            )
    print(json.dumps({"monitor_on_off_throughput": ratios}))


if __name__ == "__main__":
    main()
