"""The trusted scorer: the only code that turns a training run into a fitness.

    python -m harness.scorer request.json     # prints a JSON list: one verdict per out_dir

It never imports the candidate. It rebuilds the expected parameter tree from the budget's
configuration, validates the artifacts the sandboxed run left (see artifacts.py), and
evaluates the final policies on an evaluation seed drawn now, which the training run could
not know. Whatever the candidate printed or wrote, only these numbers count.
"""

import sandbox  # noqa: F401  (XLA flags)

# isort: split

import json
import os
import secrets
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.artifacts import ArtifactError, read_training_artifact
from sandbox.budgets import get_budget
from sandbox.fitness import Aggregate, normalise
from sandbox.tasks import load_task
from sandbox.training.envs import make_env
from sandbox.training.evaluate import evaluate_params
from sandbox.training.ppo import make_network
from sandbox.vocabulary import META_TEST, META_TRAIN, Fidelity, Status


def score(
    task_name: str,
    budget_name: str,
    out_dir: Path,
    eval_seed: int | None = None,
    training_seed: int | None = None,
    fidelity: Fidelity = Fidelity.FULL,
) -> dict:
    """The verdict on one training run's artifacts. Each environment's entry names the seeds
    its numbers rest on: the training seed (its runs' keys are split from it), how many runs,
    and the evaluation seed."""
    task, budget = load_task(task_name), get_budget(budget_name)
    split = task.split(budget.name)
    eval_seed = secrets.randbits(31) if eval_seed is None else eval_seed
    trained = split.trained(fidelity)
    per_env = {part: {} for part in trained}
    for part, env_ids in trained.items():
        for env_id in env_ids:
            config, reference = budget.config(env_id), budget.env(env_id)
            spec = make_env(env_id)
            template = make_network(config, spec.num_actions).init(
                jax.random.key(0), jnp.zeros((1, *spec.obs_shape))
            )
            try:
                params, curve = read_training_artifact(out_dir, env_id, template, budget.seeds)
            except ArtifactError as error:
                return {
                    "status": error.status,
                    "detail": str(error),
                    "fitness": None,
                    "per_env": per_env,
                }
            returns = np.asarray(evaluate_params(config, params, eval_seed, (budget.seeds,)))
            if not np.isfinite(returns).all():
                return {
                    "status": Status.NONFINITE,
                    "detail": f"{env_id}: non-finite evaluation returns",
                    "fitness": None,
                    "per_env": per_env,
                }
            scores = normalise(
                returns, random_return=reference.random_return, ppo_return=reference.ppo_return
            )
            agg, raw = Aggregate.of(scores), Aggregate.of(returns)
            per_env[part][env_id] = {
                "returns": [float(x) for x in returns],
                "return_iqm": raw.iqm,
                "normalised": {
                    "scores": [float(x) for x in scores],
                    "iqm": agg.iqm,
                    "ci_low": agg.ci_low,
                    "ci_high": agg.ci_high,
                },
                "learning_curve": [float(x) if np.isfinite(x) else None for x in curve],
                "seeds": {"training": training_seed, "runs": budget.seeds, "evaluation": eval_seed},
            }

    def mean_iqm(part):
        envs = per_env.get(part)
        return float(np.mean([e["normalised"]["iqm"] for e in envs.values()])) if envs else None

    return {
        "status": Status.OK,
        "fitness": mean_iqm(META_TRAIN),
        "meta_test_fitness": mean_iqm(META_TEST),  # None when screened
        "per_env": per_env,
        "eval_seed": eval_seed,
    }


def enable_compilation_cache() -> None:
    """The evaluation program is the same for every candidate at a budget, so compile it once
    per machine. The cache lives in the trusted user's cache directory, which no sandbox can
    see (bwrap masks it, Docker does not mount it)."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rl-scientist" / "xla"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    jax.config.update("jax_compilation_cache_dir", str(root))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


if __name__ == "__main__":
    enable_compilation_cache()
    request = json.loads(Path(sys.argv[1]).read_text())
    dirs = request["out_dirs"]
    # One evaluation seed for the whole batch, unless each directory (a block of seeds) names
    # its own: members are compared on the same episodes.
    drawn = secrets.randbits(31)
    eval_seeds = request.get("eval_seeds") or [request.get("eval_seed")] * len(dirs)
    training_seeds = request.get("training_seeds") or [request.get("training_seed")] * len(dirs)
    verdicts = [
        score(
            request["task"],
            request["budget"],
            Path(out_dir),
            drawn if eval_seed is None else int(eval_seed),
            training_seed,
            Fidelity(request.get("fidelity", Fidelity.FULL)),
        )
        for out_dir, eval_seed, training_seed in zip(dirs, eval_seeds, training_seeds, strict=True)
    ]
    sys.stdout.write(json.dumps(verdicts) + "\n")
