"""The program that runs inside the sandbox: the candidate-side stages of an evaluation.

    python -m sandbox.stages in/request.json

trace (load with restricted builtins, abstract shape contract, lower the smoke trainer under
an HLO size cap) -> validity (the task's conditions) -> smoke (compile the smoke trainer, then
1 seed for a few updates, finite results) -> full (budget seeds on every meta-train and
meta-test env). Compiling after validity means an invalid candidate never pays for it.

Where the first meta-train run of the full stage is itself short (FULL_RUN_AS_SMOKE_STEPS),
that run is the smoke test: compiling a separate short trainer would cost more than it saves.

Stages a request must name, never run by default: load (the first half of trace, without
the trainer) and landscape (a drift's values and objective gradient on the analysis grid,
out/landscape.npz; see sandbox/landscape.py).

Everything this process writes is untrusted, candidate code runs in it: stage records in
out/stages.jsonl are diagnostics, and fitness is computed elsewhere from the parameters
left in out/*.npz.
"""

import sandbox  # noqa: F401  (XLA flags)

# isort: split

import dataclasses
import json
import sys
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.artifacts import append_stage, write_json, write_training_artifact
from sandbox.budgets import get_budget
from sandbox.candidate import CandidateLoadError, load_entry_point
from sandbox.checks.contract import (
    check_elementwise_contract,
    describe_failure,
    is_control_flow_error,
    is_resource_exhaustion,
)
from sandbox.checks.pipeline import run_conditions
from sandbox.checks.signature import behaviour_signature
from sandbox.landscape import LANDSCAPE_FILE, landscape_axes
from sandbox.pieces import Contract
from sandbox.tasks import load_task
from sandbox.training.components import Components
from sandbox.training.config import PPOConfig
from sandbox.training.ppo import CandidateContractError
from sandbox.training.run import lower_batch, pooled_learning_curve, train_batch
from sandbox.vocabulary import Status

MAX_HLO_BYTES = 64 * 1024**2  # a PPO trainer is a few MB of HLO text; unroll bombs are not
SMOKE_UPDATES = 8
# Env steps (all seeds) up to which the full run trains faster on a CPU than a second program
# compiles (~1.5 s per 200k steps against ~15 s per compile), so it doubles as the smoke test.
FULL_RUN_AS_SMOKE_STEPS = 1_000_000


class StageFailure(Exception):
    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def classify(error: BaseException) -> str:
    if is_resource_exhaustion(error):
        return Status.OOM
    if isinstance(error, (CandidateContractError,)) or is_control_flow_error(error):
        return Status.INVALID
    return Status.FAILED


class SmokeRun(NamedTuple):
    config: PPOConfig
    seeds: int
    is_full_run: bool  # then the full stage keeps its result


def smoke_run(budget, env_id) -> SmokeRun:
    """The smoke test: the full run where it is short, else one seed for a few updates."""
    config = budget.config(env_id)
    if config.env_steps * budget.seeds <= FULL_RUN_AS_SMOKE_STEPS:
        return SmokeRun(config, budget.seeds, True)
    steps = min(config.total_timesteps, SMOKE_UPDATES * config.batch_size)
    return SmokeRun(dataclasses.replace(config, total_timesteps=steps), 1, False)


def drift_landscape(
    function, ratio: np.ndarray, advantage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """D(r, A) and d(r*A - D)/dr on the grid, rows = advantage. Each row is one call on a 1-D
    ratio array, as in training; the drift is elementwise, so the gradient of the row's sum
    is the elementwise derivative."""

    def drift_of(r, a):
        return jnp.asarray(function(r, a), jnp.float32)

    def row(r, a):
        a = jnp.full_like(r, a)
        return drift_of(r, a), jax.grad(lambda x: jnp.sum(x * a - drift_of(x, a)))(r)

    drift, slope = jax.jit(jax.vmap(row, in_axes=(None, 0)))(
        jnp.asarray(ratio), jnp.asarray(advantage)
    )
    return np.asarray(drift, np.float32), np.asarray(slope, np.float32)


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    scratch = Path(request_path).resolve().parent.parent
    out = scratch / "out"
    out.mkdir(exist_ok=True)
    task = load_task(request["task"])
    budget = get_budget(request["budget"])
    split = task.split(budget.name)
    stages = request.get("stages", ["trace", "validity", "smoke", "full"])
    source = (scratch / "in" / "candidate.py").read_text()
    state = {}

    def load():
        try:
            function = load_entry_point(source, task.entry_point, filename="candidate.py")
        except CandidateLoadError as error:
            raise StageFailure(Status.FAILED, str(error)) from None
        if task.piece.contract is Contract.ELEMENTWISE:
            # A crash while tracing is a failure; Python control flow on tracers, a wrong shape or
            # mixing across the batch break the contract (invalid).
            try:
                jax.eval_shape(
                    function, *[jax.ShapeDtypeStruct((7,), jnp.float32)] * len(task.inputs)
                )
            except Exception as error:
                status = Status.INVALID if is_control_flow_error(error) else classify(error)
                raise StageFailure(status, describe_failure(error, "candidate.py")) from None
            contract = check_elementwise_contract(function, tuple(task.inputs), "candidate.py")
            if not contract.passed:
                raise StageFailure(Status.INVALID, contract.detail)
        state["function"] = function
        return f"loaded {task.entry_point}()"

    def trace():
        load()
        components = Components(**{task.piece.plug_point: state["function"]})
        run = smoke_run(budget, split.meta_train[0])
        config = run.config
        lowered = lower_batch(config, components, seeds=run.seeds, seed=request["seed"])
        size = lowered.hlo_bytes
        if size > MAX_HLO_BYTES:
            raise StageFailure(
                Status.FAILED,
                f"the training program is {size / 1e6:.0f} MB of HLO (limit "
                f"{MAX_HLO_BYTES / 1e6:.0f} MB): unrolled Python loops in the candidate?",
            )
        state.update(components=components, smoke=(run, lowered), trained={})
        return f"lowered the {config.env_id} trainer ({size / 1e6:.1f} MB HLO)"

    def landscape():
        if not task.piece.has_landscape:
            raise StageFailure(
                Status.FAILED, f"landscapes are defined for drift candidates, not {task.piece.kind}"
            )
        if "function" not in state:
            load()
        ratio, advantage = landscape_axes()
        drift, slope = drift_landscape(state["function"], ratio, advantage)
        if drift.shape != (advantage.size, ratio.size) or slope.shape != drift.shape:
            raise StageFailure(
                Status.INVALID,
                f"the drift returned shape {drift.shape} on a {ratio.size}-ratio grid",
            )
        np.savez(
            out / LANDSCAPE_FILE,
            ratio=ratio,
            advantage=advantage,
            drift=drift,
            d_objective_dr=slope,
        )
        return (
            f"{advantage.size} x {ratio.size} grid, "
            f"{int(np.isfinite(drift).sum())} finite drift values"
        )

    def validity():
        report = run_conditions(task, state["function"], "candidate.py")
        write_json(out / "checks.json", report.to_dict())
        if not report.valid:
            raise StageFailure(
                Status.INVALID, "; ".join(f"{c.name}: {c.detail}" for c in report.failures)
            )
        # The trusted side compares this with the archive and may stop the run as a duplicate.
        write_json(
            out / "signature.json",
            {"signature": behaviour_signature(task.piece, state["function"])},
        )
        return f"{len(report.checks)} conditions hold"

    def smoke():
        run, lowered = state["smoke"]
        batch = lowered.compile().run()
        config, output = run.config, batch.output
        leaves = jax.tree.leaves(output.params)
        runs = f"{config.env_steps} steps x {run.seeds} seeds on {config.env_id}"
        if (
            not all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
            or not np.isfinite(output.entropy).all()
        ):
            raise StageFailure(Status.NONFINITE, f"{runs} gave NaN or inf")
        if run.is_full_run:
            state["trained"][config.env_id] = batch
            return f"{runs} (the full run, kept for the full stage), finite"
        return f"{runs}, finite"

    def full():
        for env_id in split.meta_train + split.meta_test:
            batch = state["trained"].pop(env_id, None) or train_batch(
                budget.config(env_id), state["components"], seeds=budget.seeds, seed=request["seed"]
            )
            curve = pooled_learning_curve(batch.output, axis=(0, 1))
            params = jax.tree.map(lambda x: x[0], batch.output.params)  # one learning rate
            write_training_artifact(out, env_id, params, curve)
            print(
                f"trained {env_id}: {batch.env_steps} steps in {batch.train_seconds:.1f} s",
                flush=True,
            )
        return f"{budget.seeds} seeds on {', '.join(split.meta_train + split.meta_test)}"

    for name in stages:
        append_stage(out, {"stage": name, "event": "start", "time": time.time()})
        start = time.monotonic()
        try:
            detail = {
                "load": load,
                "trace": trace,
                "validity": validity,
                "smoke": smoke,
                "full": full,
                "landscape": landscape,
            }[name]()
            status = Status.OK
        except StageFailure as failure:
            status, detail = failure.status, failure.detail
        except Exception as error:  # a crash in candidate code, or resource exhaustion
            status = classify(error)
            detail = f"{type(error).__name__}: {str(error)[:2000]}"
            traceback.print_exc()
        append_stage(
            out,
            {
                "stage": name,
                "status": status,
                "seconds": time.monotonic() - start,
                "detail": detail,
            },
        )
        print(f"stage {name}: {status}: {detail[:500]}", flush=True)
        if status != Status.OK:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
