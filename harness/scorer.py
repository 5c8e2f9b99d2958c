"""The trusted scorer: the only code that turns a training run into a fitness.

    python -m harness.scorer request.json     # prints a JSON list: one verdict per out_dir
    python -m harness.scorer --serve          # the same, request after request (a warm scorer)

It never imports the candidate. It rebuilds the expected parameter tree from the budget's
configuration, validates the artifacts the sandboxed run left (see artifacts.py), and
evaluates the final policies on an evaluation seed drawn now, which the training run could
not know. Whatever the candidate printed or wrote, only these numbers count.
"""

import sandbox  # noqa: F401  (XLA flags)

# isort: split

import functools
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.artifacts import ArtifactError, read_training_artifact
from sandbox.budgets import get_budget
from sandbox.families import make_env
from sandbox.fitness import Aggregate, normalise
from sandbox.tasks import load_task
from sandbox.training.evaluate import evaluate_runs
from sandbox.training.ppo import make_network
from sandbox.vocabulary import META_TEST, META_TRAIN, Fidelity, Status


def score_all(
    task_name: str,
    budget_name: str,
    out_dirs: list[Path],
    eval_seeds: list[int],
    training_seeds: list[int | None],
    fidelity: Fidelity = Fidelity.FULL,
) -> list[dict]:
    """The verdict on each training run's artifacts, every run's policies evaluated in one
    call per environment, each on its own evaluation seed's episodes (the numbers it would
    get alone). Each environment's entry names the seeds its numbers rest on: the training
    seed (its runs' keys are split from it), how many runs, and the evaluation seed."""
    task, budget = load_task(task_name), get_budget(budget_name)
    trained = task.split(budget.name).trained(fidelity)
    per_env = [{part: {} for part in trained} for _ in out_dirs]
    failed: dict[int, dict] = {}

    def fail(i: int, status: str, detail: str) -> None:
        failed[i] = {"status": status, "detail": detail, "fitness": None, "per_env": per_env[i]}

    for part, env_ids in trained.items():
        for env_id in env_ids:
            config, reference = budget.config(env_id), budget.env(env_id)
            loaded = {}
            for i, out_dir in enumerate(out_dirs):
                if i in failed:
                    continue
                try:
                    loaded[i] = read_training_artifact(
                        out_dir, env_id, _template(config), budget.seeds
                    )
                except ArtifactError as error:
                    fail(i, error.status, str(error))
            if not loaded:
                continue
            params = jax.tree.map(lambda *xs: jnp.stack(xs), *(p for p, _ in loaded.values()))
            seeds = [eval_seeds[i] for i in loaded]
            returns = np.asarray(evaluate_runs(config, params, seeds, budget.seeds))
            for (i, (_, curve)), run_returns in zip(loaded.items(), returns, strict=True):
                if not np.isfinite(run_returns).all():
                    fail(i, Status.NONFINITE, f"{env_id}: non-finite evaluation returns")
                    continue
                per_env[i][part][env_id] = _entry(
                    run_returns, curve, reference, training_seeds[i], budget.seeds, eval_seeds[i]
                )

    def mean_iqm(i, part):
        envs = per_env[i].get(part)
        return float(np.mean([e["normalised"]["iqm"] for e in envs.values()])) if envs else None

    return [
        failed.get(i)
        or {
            "status": Status.OK,
            "fitness": mean_iqm(i, META_TRAIN),
            "meta_test_fitness": mean_iqm(i, META_TEST),  # None when screened
            "per_env": per_env[i],
            "eval_seed": eval_seeds[i],
        }
        for i in range(len(out_dirs))
    ]


@functools.cache
def _template(config):
    """The parameter tree a run's artifact must match (its structure and shapes, traced, not
    computed), rebuilt from the budget alone."""
    spec = make_env(config.env_id)
    network = make_network(config, spec)
    return jax.eval_shape(network.init, jax.random.key(0), jnp.zeros((1, *spec.obs_shape)))


def _entry(returns, curve, reference, training_seed, runs: int, eval_seed: int) -> dict:
    scores = normalise(
        returns, random_return=reference.random_return, ppo_return=reference.ppo_return
    )
    agg, raw = Aggregate.of(scores), Aggregate.of(returns)
    return {
        "returns": [float(x) for x in returns],
        "return_iqm": raw.iqm,
        "normalised": {
            "scores": [float(x) for x in scores],
            "iqm": agg.iqm,
            "ci_low": agg.ci_low,
            "ci_high": agg.ci_high,
        },
        "learning_curve": [float(x) if np.isfinite(x) else None for x in curve],
        "seeds": {"training": training_seed, "runs": runs, "evaluation": eval_seed},
    }


def enable_compilation_cache() -> None:
    """The evaluation program is the same for every candidate at a budget, so compile it once
    per machine. The cache lives in the trusted user's cache directory, which no sandbox can
    see (bwrap masks it, Docker does not mount it)."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rl-scientist" / "xla"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    jax.config.update("jax_compilation_cache_dir", str(root))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def score_request(request: dict) -> list[dict]:
    """The verdicts for one request file's contents (see `harness/scoring.py`)."""
    dirs = request["out_dirs"]
    # One evaluation seed for the whole batch, unless each directory (a block of seeds) names
    # its own: members are compared on the same episodes.
    drawn = secrets.randbits(31)
    eval_seeds = request.get("eval_seeds") or [request.get("eval_seed")] * len(dirs)
    training_seeds = request.get("training_seeds") or [request.get("training_seed")] * len(dirs)
    return score_all(
        request["task"],
        request["budget"],
        [Path(d) for d in dirs],
        [drawn if seed is None else int(seed) for seed in eval_seeds],
        training_seeds,
        Fidelity(request.get("fidelity", Fidelity.FULL)),
    )


def serve() -> None:
    """Score request after request: a request file's path per line on stdin, one JSON line of
    verdicts per request on stdout; ends at the end of stdin, or mid-request once its caller
    is gone (nobody is left to read the verdict). Whatever a library prints goes to stderr,
    so stdout carries verdicts alone."""
    caller = os.getppid()

    def watch() -> None:
        while os.getppid() == caller:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for line in sys.stdin:
        verdicts = score_request(json.loads(Path(line.strip()).read_text()))
        replies.write(json.dumps(verdicts) + "\n")
        replies.flush()


if __name__ == "__main__":
    enable_compilation_cache()
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        verdicts = score_request(json.loads(Path(sys.argv[1]).read_text()))
        sys.stdout.write(json.dumps(verdicts) + "\n")
