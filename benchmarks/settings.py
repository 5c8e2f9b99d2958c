"""Where does the drift decide? A grid of cheap meta-train settings (environment, steps and
PPO's own settings), each scored on the four criteria a discovery setting must meet:

1. the zero drift scores at most half of PPO (normalised between a random policy and PPO);
2. PPO is not at the environment's ceiling (a drift can beat it);
3. a candidate's screening (one environment, one block of `--screen-seeds` seeds) costs at
   most about 2 s of training on 2 cores, measured in a batch of all the drifts;
4. drift rankings agree with the `quick` budget's Breakout-MinAtar rankings (Spearman's
   rank correlation over PPO, DPO, zero and `--gp` mutation-proposer drifts).

    python -m benchmarks.settings --reference     # the quick budget's MinAtar run (long)
    python -m benchmarks.settings                 # the grid, against that reference
    python -m benchmarks.settings --envs Acrobot-v1 --steps 50000 --epochs 16 --lrs 0.01

Every drift trains on the same seed keys (paired seeds): one compiled batch per setting,
expressions run as data, the trusted trainer without the runtime monitor. Scores are mean
returns over `--seeds` seeds of the sampled policy, ± their standard errors; the rank
correlation's interval is Fisher's z with the Bonett-Wright standard error, and its coverage
at the measured correlation and number of drifts is simulated and printed beside it.
Measured, never asserted; ends with one JSON line of the headline figures.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks.campaign import gp_candidates
from sandbox.budgets import get_budget, random_return
from sandbox.tasks import load_task
from sandbox.training.bytecode import expression_bytecode
from sandbox.training.config import preset
from sandbox.training.run import evaluate_batch, lower_members

TASK = "mirror_drift"
BASELINES = ("ppo", "dpo", "zero")
REFERENCE = Path(__file__).parent / "results" / "settings_reference.json"
# The highest return an environment allows, where it has one (CartPole's episodes end at 500).
CEILING = {"CartPole-v1": 500.0}
CEILING_ROOM = 0.95  # PPO "at the ceiling" at or above this share of it
ZERO_AT_MOST = 0.5
SCREEN_SECONDS = 2.0
EVAL_SEED = 10_007


@dataclass(frozen=True)
class Setting:
    env_id: str
    timesteps: int
    overrides: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        short = {"update_epochs": "e", "num_minibatches": "m", "learning_rate": "lr"}
        parts = [f"{short.get(k, k)}{v:g}" for k, v in sorted(self.overrides.items())]
        return f"{self.env_id.split('-')[0]}/{self.timesteps // 1000}k/" + ",".join(parts)

    def config(self):
        return preset(self.env_id, total_timesteps=self.timesteps, monitor=(), **self.overrides)


def drifts(gp: int) -> dict[str, str]:
    task = load_task(TASK)
    named = {name: task.baseline_source(name) for name in BASELINES}
    named.update({f"gp{i}": code for i, code in enumerate(gp_candidates(gp, seed=1))})
    return named


def member(code: str):
    """A drift as data for the trainer's interpreter: candidate code is never loaded outside
    a sandbox, and every drift here (the baselines, the GP proposals) is an expression."""
    bytecode = expression_bytecode(code, "drift", ("ratio", "advantage"))
    if bytecode is None:
        raise ValueError(f"not an expression the interpreter runs:\n{code}")
    return bytecode


def train(config, named: dict[str, str], seeds: int) -> tuple[dict[str, np.ndarray], float]:
    """Final returns per drift ([seeds], paired) and the batch's training seconds."""
    lowered = lower_members(config, "drift", [member(c) for c in named.values()], seeds=seeds)
    batch = lowered.compile().run()
    returns = {
        name: evaluate_batch(batch.member(i), eval_seed=EVAL_SEED)[0]
        for i, name in enumerate(named)
    }
    return returns, batch.train_seconds


def normalised(returns: dict[str, np.ndarray], env_id: str) -> dict[str, float]:
    low, ppo = random_return(env_id), float(np.mean(returns["ppo"]))
    return {k: (float(np.mean(v)) - low) / (ppo - low) for k, v in returns.items()}


def spearman_interval(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Fisher's z interval with the Bonett-Wright standard error for Spearman's rho."""
    if n <= 3 or not math.isfinite(r):
        return (math.nan, math.nan)
    z, half = np.arctanh(np.clip(r, -0.9999, 0.9999)), stats.norm.ppf(0.5 + level / 2)
    se = math.sqrt((1 + r * r / 2) / (n - 3))
    return (float(np.tanh(z - half * se)), float(np.tanh(z + half * se)))


def simulated_coverage(rho_s: float, n: int, reps: int = 4000, seed: int = 0) -> float:
    """How often `spearman_interval` holds the true Spearman correlation, for bivariate normal
    samples of n drifts whose population Spearman correlation is `rho_s`."""
    if not math.isfinite(rho_s) or n <= 3:
        return math.nan
    rho = 2 * math.sin(math.pi * np.clip(rho_s, -0.999, 0.999) / 6)  # Pearson for that Spearman
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((reps, n))
    y = rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal((reps, n))
    rx, ry = (stats.rankdata(a, axis=1) for a in (x, y))
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    r = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    held = [lo <= rho_s <= hi for lo, hi in (spearman_interval(v, n) for v in r)]
    return float(np.mean(held))


def reference(args) -> None:
    """The quick budget's Breakout-MinAtar scores of every drift, saved for the grid."""
    budget = get_budget("quick")
    config = budget.config("Breakout-MinAtar", monitor=())
    named = drifts(args.gp)
    returns, seconds = train(config, named, args.reference_seeds)
    data = {
        "env": config.env_id,
        "timesteps": config.total_timesteps,
        "seeds": args.reference_seeds,
        "train_seconds": round(seconds, 1),
        "returns": {k: [float(x) for x in v] for k, v in returns.items()},
        "normalised": normalised(returns, config.env_id),
        "drifts": named,
    }
    args.reference_file.parent.mkdir(parents=True, exist_ok=True)
    args.reference_file.write_text(json.dumps(data, indent=1) + "\n")
    for name, v in returns.items():
        print(f"{name:<6}{np.mean(v):>9.2f} ± {stats.sem(v):.2f}")
    print(json.dumps({"reference_normalised": data["normalised"], "train_seconds": seconds}))


def grid(args) -> list[Setting]:
    settings = []
    for env, steps, epochs, minibatches, lr in itertools.product(
        args.envs, args.steps, args.epochs, args.minibatches, args.lrs
    ):
        overrides = {"update_epochs": epochs, "num_minibatches": minibatches, "learning_rate": lr}
        settings.append(Setting(env, steps, overrides))
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["Acrobot-v1", "CartPole-v1"])
    parser.add_argument("--steps", nargs="+", type=int, default=[25_000, 50_000])
    parser.add_argument("--epochs", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--minibatches", nargs="+", type=int, default=[1])
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-2, 3e-3])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--screen-seeds", type=int, default=2)
    parser.add_argument("--gp", type=int, default=10, help="mutation-proposer drifts")
    parser.add_argument("--reference", action="store_true", help="run the MinAtar reference")
    parser.add_argument("--reference-seeds", type=int, default=4)
    parser.add_argument("--reference-file", type=Path, default=REFERENCE)
    args = parser.parse_args()
    if args.reference:
        return reference(args)

    named = drifts(args.gp)
    rows = [measure(setting, named, args) for setting in grid(args)]
    ref = reference_scores(args.reference_file, named)  # read now: it may finish meanwhile
    print(
        f"\n{'setting':<34}{'zero':>14}{'DPO':>14}{'PPO':>14}{'zero/PPO':>9}"
        f"{'best GP/PPO':>12}{'screen s':>9}{'rank corr. [95%]':>22}{'cover':>7}  criteria"
    )
    for row in rows:
        judge(row, ref)
    print("criteria: zero <= half of PPO, PPO below its ceiling, screening <= 2 s, ranks agree")
    best = max(
        rows, key=lambda r: (sum(map(bool, r["criteria"].values())), r["rank_correlation"] or -1)
    )
    print(
        json.dumps(
            {
                "settings": len(rows),
                "seeds": args.seeds,
                "drifts": len(named),
                "best": best["setting"],
                "best_criteria": best["criteria"],
                "rows": rows,
            }
        )
    )


def reference_scores(path: Path, named: dict[str, str]) -> dict[str, float] | None:
    """The reference run's normalised scores, if it trained these very drifts."""
    if not path.is_file():
        print(f"no reference run at {path}: no rank correlation")
        return None
    ref = json.loads(path.read_text())
    if ref["drifts"] != named:
        print(f"{path} trained other drifts: no rank correlation")
        return None
    return ref["normalised"]


def measure(setting: Setting, named: dict[str, str], args) -> dict:
    """Train every drift at one setting; its figures."""
    config = setting.config()
    returns, seconds = train(config, named, args.seeds)
    ceiling = CEILING.get(config.env_id)
    print(f"trained {setting.name}: {seconds:.1f} s", flush=True)
    return {
        "setting": setting.name,
        "env": setting.env_id,
        "timesteps": setting.timesteps,
        **setting.overrides,
        "mean_return": {k: float(np.mean(v)) for k, v in returns.items()},
        "standard_error": {k: float(stats.sem(v)) for k, v in returns.items()},
        "normalised": normalised(returns, config.env_id),
        "train_seconds": seconds,
        "screen_seconds": seconds / (len(named) * args.seeds) * args.screen_seeds,
        "ppo_below_ceiling": ceiling is None
        or float(np.mean(returns["ppo"])) < CEILING_ROOM * ceiling,
    }


def judge(row: dict, ref: dict[str, float] | None) -> None:
    """Add the rank correlation and the four criteria to a row, and print it."""
    norm = row["normalised"]
    rho = low = high = cover = math.nan
    if ref is not None:
        names = list(norm)
        rho = float(stats.spearmanr([norm[k] for k in names], [ref[k] for k in names])[0])
        low, high = spearman_interval(rho, len(names))
        cover = simulated_coverage(rho, len(names))
    met = {
        "zero_at_most_half": bool(norm["zero"] <= ZERO_AT_MOST),
        "ppo_below_ceiling": bool(row.pop("ppo_below_ceiling")),
        "screen_within_2s": bool(row["screen_seconds"] <= SCREEN_SECONDS),
        "ranks_agree": bool(low > 0) if ref is not None else None,
    }
    finite = lambda x: x if math.isfinite(x) else None  # noqa: E731  (JSON has no NaN)
    row.update(
        rank_correlation=finite(rho),
        rank_interval=[finite(low), finite(high)],
        interval_coverage=finite(cover),
        criteria=met,
    )
    mean, se = row["mean_return"], row["standard_error"]
    cells = "".join(f"{f'{mean[k]:.1f}±{se[k]:.1f}':>14}" for k in ("zero", "dpo", "ppo"))
    best_gp = max((v for k, v in norm.items() if k.startswith("gp")), default=math.nan)
    marks = "".join({True: "+", False: "-", None: "?"}[v] for v in met.values())
    print(
        f"{row['setting']:<34}{cells}{norm['zero']:>9.2f}{best_gp:>12.2f}"
        f"{row['screen_seconds']:>9.2f}{f'{rho:.2f} [{low:.2f}, {high:.2f}]':>22}"
        f"{cover:>7.2f}  {marks}"
    )


if __name__ == "__main__":
    main()
