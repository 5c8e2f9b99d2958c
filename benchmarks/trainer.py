"""Our trainer side by side with PureJaxRL's `ppo.py`: env steps per second of one compiled call,
alternating runs on the same configurations, in one process.

    python -m benchmarks.trainer --purejaxrl /scratch/purejaxrl/ppo.py
    python -m benchmarks.trainer --purejaxrl PATH --rounds 3 --cases cartpole-8

PureJaxRL is not a dependency: point `--purejaxrl` at a copy of its `ppo.py` adapted to
gymnax 1.x in scratch space (gymnax's `LegacyStepAPIWrapper` under its wrappers, a plain
categorical in place of distrax); its `make_train(config)` must return `train(rng)`. Both
trainers run the same hyperparameters (PureJaxRL's CartPole and MinAtar examples); each is
compiled once per case, outside the timing. Measured, never asserted.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import jax

from sandbox.training.config import preset
from sandbox.training.run import lower_batch

# name: (env, seeds, total timesteps)
CASES = {
    "cartpole-1": ("CartPole-v1", 1, 500_000),
    "cartpole-8": ("CartPole-v1", 8, 500_000),
    "cartpole-32": ("CartPole-v1", 32, 200_000),
    "breakout-1": ("Breakout-MinAtar", 1, 1_000_000),
}


def load_purejaxrl(path: Path):
    sys.path.insert(0, str(path.parent))  # its `from wrappers import ...`
    spec = importlib.util.spec_from_file_location("purejaxrl_ppo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def purejaxrl_config(env_id: str, timesteps: int) -> dict:
    ours = preset(env_id, total_timesteps=timesteps)
    return {
        "LR": ours.learning_rate,
        "NUM_ENVS": ours.num_envs,
        "NUM_STEPS": ours.num_steps,
        "TOTAL_TIMESTEPS": timesteps,
        "UPDATE_EPOCHS": ours.update_epochs,
        "NUM_MINIBATCHES": ours.num_minibatches,
        "GAMMA": ours.gamma,
        "GAE_LAMBDA": ours.gae_lambda,
        "CLIP_EPS": ours.clip_eps,
        "ENT_COEF": ours.ent_coef,
        "VF_COEF": ours.vf_coef,
        "MAX_GRAD_NORM": ours.max_grad_norm,
        "ACTIVATION": ours.activation,
        "ENV_NAME": env_id,
        "ANNEAL_LR": ours.anneal_lr,
        "DEBUG": False,
    }


def compiled_ours(env_id: str, seeds: int, timesteps: int):
    # The trainer against PureJaxRL's: no runtime monitor (benchmarks.monitor measures it).
    lowered = lower_batch(preset(env_id, total_timesteps=timesteps, monitor=()), seeds=seeds)
    program = lowered.lowered.compile()
    return lambda: program(*lowered.args), lowered.config.env_steps * seeds


def compiled_theirs(module, env_id: str, seeds: int, timesteps: int):
    config = purejaxrl_config(env_id, timesteps)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    program = jax.jit(jax.vmap(module.make_train(config))).lower(keys).compile()
    steps = config["NUM_UPDATES"] * config["NUM_STEPS"] * config["NUM_ENVS"] * seeds
    return lambda: program(keys), steps


def steps_per_second(run, steps: int) -> float:
    start = time.perf_counter()
    jax.block_until_ready(run())
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--purejaxrl", type=Path, required=True, help="an adapted ppo.py")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    module = load_purejaxrl(args.purejaxrl)
    print(f"{'case':<13}{'round':>6}{'ours steps/s':>14}{'PureJaxRL':>12}{'ratio':>8}")
    cases: dict[str, dict] = {}
    for name in args.cases:
        env_id, seeds, timesteps = CASES[name]
        runs = {
            "ours": compiled_ours(env_id, seeds, timesteps),
            "theirs": compiled_theirs(module, env_id, seeds, timesteps),
        }
        ours, theirs = [], []
        for round_ in range(1, args.rounds + 1):
            # Alternate, and swap who goes first, so drift in machine load hits both alike.
            order = ("ours", "theirs") if round_ % 2 else ("theirs", "ours")
            rate = {who: steps_per_second(*runs[who]) for who in order}
            a, b = rate["ours"], rate["theirs"]
            print(f"{name:<13}{round_:>6}{a:>14,.0f}{b:>12,.0f}{a / b:>8.2f}", flush=True)
            ours.append(a)
            theirs.append(b)
        cases[name] = {
            "ours_steps_per_second": round(statistics.median(ours), 1),
            "purejaxrl_steps_per_second": round(statistics.median(theirs), 1),
            "ratio": round(statistics.median(a / b for a, b in zip(ours, theirs)), 3),
        }
    print(json.dumps({"rounds": args.rounds, "cases": cases}))


if __name__ == "__main__":
    main()
