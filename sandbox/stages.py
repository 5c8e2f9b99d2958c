"""The program that runs inside the sandbox: the candidate-side stages of an evaluation.

    python -m sandbox.stages request.json

A request names a batch of members (`"members"`: `{"name": "0", "source": ..., "out": ...}`
each, and `"records"`: the batch's own out directory), or one candidate in in/candidate.py
with its records in out/ when it names none. The trusted side names each member's source
in/<token>/candidate.py and its out directory out/<token>, absolute paths with random
tokens no member can guess, so that none can reach another's files; in/ is read-only where
the backend allows. Every source is read, and a request naming members (it holds the
tokens) deleted, before any candidate code runs. A member whose out directory is not the
empty one the trusted side made runs no stage and writes nothing (it could be a link into
another's). Each member goes through its own stages and stops at the first that fails; the
others go on without it:

- trace (per member): load with restricted builtins, the abstract shape contract, and the
  plug-point function lowered alone at the trainer's shapes under an HLO size cap;
- validity (per member): the task's conditions, then the behaviour signature;
- trial (the batch): a short training run of every surviving member as one program
  (training/run.py, lower_members), compiled once, 1 seed for a few updates or the whole
  first run where it is short (FULL_RUN_AS_TRIAL_STEPS); finite results per member;
- full (the batch): budget seeds on every meta-train and meta-test env (the meta-train
  ones alone where the request's `"fidelity"` is "screen"), one program per env, run once
  per block of seeds the request names (`"seeds"`: each block's training seed, the first
  being `"seed"`; artifacts of block j in <out>/block-j when there are several).

Compiling after validity means an invalid candidate never pays for a compile. A program
that will not lower with several members is lowered for each alone, so only the member that
breaks it is charged.

Stages a request must name, never run by default: load (the first half of trace) and
landscape (a drift's values and objective gradient on the analysis grid, out/landscape.npz;
see sandbox/landscape.py).

Everything this process writes is untrusted, candidate code runs in it: stage records in
<out>/stages.jsonl are diagnostics (the batch's, in `"records"`, only ever shortens its
time), and fitness is computed elsewhere from the parameters left in each member's
<out>/*.npz. The trusted side reads them as harness/outputs.py does, never following a link.
"""

import sandbox  # noqa: F401  (XLA flags)

# isort: split

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.artifacts import (
    append_stage,
    block_dir,
    write_atomically,
    write_json,
    write_training_artifact,
)
from sandbox.budgets import get_budget
from sandbox.candidate import CandidateLoadError, load_entry_point
from sandbox.checks.contract import (
    describe_failure,
    is_control_flow_error,
    is_resource_exhaustion,
)
from sandbox.checks.pipeline import contract_check, run_conditions
from sandbox.checks.report import CheckReport, CheckResult
from sandbox.checks.signature import behaviour_signature
from sandbox.landscape import LANDSCAPE_FILE, landscape_axes
from sandbox.pieces import Contract
from sandbox.tasks import TaskSpec, load_task
from sandbox.training.bytecode import Bytecode, tree_function
from sandbox.training.config import PPOConfig
from sandbox.training.members import DataMember, as_function, describe, member_data
from sandbox.training.monitor import violations
from sandbox.training.ppo import CandidateContractError, Components, checked_call
from sandbox.training.run import (
    LoweredBatch,
    TrainingBatch,
    lower_batch,
    lower_members,
    pooled_learning_curve,
    sandbox_source_digest,
)
from sandbox.vocabulary import Assurance, Fidelity, Proof, Stage, Status

MAX_HLO_BYTES = 64 * 1024**2  # a PPO trainer is a few MB of HLO text; unroll bombs are not
MAX_FUNCTION_HLO_BYTES = 8 * 1024**2  # a plug-point function alone is a few kB
TRIAL_UPDATES = 8
# Env steps (all seeds) up to which the full run trains faster on a CPU than a second program
# compiles (~1.5 s per 200k steps against ~15 s per compile), so it doubles as the trial.
FULL_RUN_AS_TRIAL_STEPS = 1_000_000
MEMBER_STAGES = (Stage.LOAD, Stage.TRACE, Stage.VALIDITY, Stage.LANDSCAPE)
BATCH_STAGES = (Stage.TRIAL, Stage.FULL)


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


def jax_settings() -> dict:
    """JAX's process-wide settings as this thread sees them."""
    values = {}
    for name in jax.config.values:
        try:
            values[name] = repr(getattr(jax.config, name))
        except AttributeError:
            values[name] = repr(jax.config.values[name])
    return values


@contextlib.contextmanager
def settings_kept():
    """Fail a member stage that changed JAX's process-wide settings, and restore them: the
    other members of the batch train in this process."""
    before, values = jax_settings(), dict(jax.config.values)
    yield
    changed = sorted(k for k, v in jax_settings().items() if before.get(k) != v)
    if changed:
        for name in changed:
            if name in values:
                jax.config.update(name, values[name])
        raise StageFailure(
            Status.FAILED,
            f"changed JAX's process-wide settings ({', '.join(changed[:5])}); candidates "
            "share their process with others and may not",
        )


def failure_of(error: BaseException) -> StageFailure:
    if isinstance(error, StageFailure):
        return error
    return StageFailure(classify(error), f"{type(error).__name__}: {str(error)[:2000]}")


class TrialRun(NamedTuple):
    config: PPOConfig
    seeds: int
    is_full_run: bool  # then the full stage keeps its result


def trial_run(budget, env_id) -> TrialRun:
    """The trial: the full run where it is short, else one seed for a few updates."""
    config = budget.config(env_id)
    if config.env_steps * budget.seeds <= FULL_RUN_AS_TRIAL_STEPS:
        return TrialRun(config, budget.seeds, True)
    steps = min(config.total_timesteps, TRIAL_UPDATES * config.batch_size)
    return TrialRun(dataclasses.replace(config, total_timesteps=steps), 1, False)


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


def _read_report(path: Path) -> CheckReport | None:
    """A cached check report, or None when there is none or it cannot be read."""
    try:
        stored = json.loads(path.read_text())
        return CheckReport([CheckResult(**c) for c in stored["checks"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclasses.dataclass
class Member:
    """One candidate of the batch: its own source, records, artifacts and log tag."""

    name: str
    source: str
    out: Path
    function: Callable | None = None
    data: DataMember | None = None  # an expression or a rendered LPO network: run as data
    certified: bool = False  # bytecode whose every condition is proved: no monitor needed
    failed: bool = False
    trained: dict[tuple[str, int], TrainingBatch] = dataclasses.field(default_factory=dict)

    @property
    def tag(self) -> str:  # prefixes this member's log lines, so the trusted side can split them
        return f"[member {self.name}] " if self.name else ""

    def record(self, stage: str, status: str, seconds: float, detail: str) -> None:
        try:
            append_stage(
                self.out, {"stage": stage, "status": status, "seconds": seconds, "detail": detail}
            )
        except OSError as error:  # its own out directory broken: it fails, the others go on
            status, detail = Status.FAILED, f"cannot write its records: {error}"
        print(f"{self.tag}stage {stage}: {status}: {detail[:500]}", flush=True)
        self.failed = self.failed or status != Status.OK

    def tampered(self) -> str | None:
        """Why its out directory is not the empty directory the trusted side made, if it is
        not: writing through a link put there could land in another member's files."""
        try:
            if not stat.S_ISDIR(self.out.lstat().st_mode):
                return "its out directory is not a directory"
            if any(self.out.iterdir()):
                return "its out directory is not empty"
        except OSError as error:
            return f"its out directory is unreadable: {error}"
        return None


class Batch:
    """The stages of one request, run over its members."""

    def __init__(self, request: dict, scratch: Path):
        self.task: TaskSpec = load_task(request["task"])
        self.budget = get_budget(request["budget"])
        self.split = self.task.split(self.budget.name)
        # Screening trains the meta-train environments alone (the trusted scorer reads only
        # what the fidelity it asked for names, whatever is left here).
        self.fidelity = Fidelity(request.get("fidelity", Fidelity.FULL))
        self.seed = request["seed"]
        # Further blocks reuse each compiled program with other keys: one process, one check
        # and one compile for all of them.
        self.seeds = [int(x) for x in request.get("seeds") or [self.seed]]
        if self.seeds[0] != self.seed:
            raise ValueError("the request's first block must train from its seed")
        members = request.get("members")
        self.named = members is not None
        if self.named:
            self.out = Path(request["records"])
            places = [(m["name"], Path(m["source"]), Path(m["out"])) for m in members]
        else:
            self.out = scratch / "out"
            self.out.mkdir(exist_ok=True)
            places = [("", scratch / "in" / "candidate.py", self.out)]
        # Every source is read here, before any candidate code runs.
        self.members = [Member(name, source.read_text(), out) for name, source, out in places]
        for member in self.members if self.named else ():
            problem = member.tampered()
            if problem:  # not written to at all: the trusted side reads what is there
                member.failed = True
                print(f"{member.tag}{problem} at the start: no stage runs", flush=True)
        self.plug_point = self.task.piece.plug_point
        # Functions of arrays share one trainer; optimizer factories get a program each.
        self.shared_program = self.task.piece.contract is Contract.ELEMENTWISE
        # The trusted side found every member to run as data: nothing here executes a
        # candidate's code, so this run may keep what it compiles (see cascade.py).
        self.data_only = bool(request.get("data_only"))
        self.exported = None  # where trainers of batches run as data are kept, exported
        if self.data_only and request.get("compilation_cache"):
            jax.config.update("jax_compilation_cache_dir", request["compilation_cache"])
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            self.exported = Path(request["compilation_cache"]) / "exported"

    def alive(self) -> list[Member]:
        return [m for m in self.members if not m.failed]

    # -- per member ------------------------------------------------------------------------
    def load(self, member: Member) -> str:
        task = self.task
        member.data = self._data(member.source)
        if member.data is not None:
            # Checked and trained through its kind's runner: what is checked is what trains,
            # and every member of that kind shares the checks' compiled probes.
            member.function = as_function(member.data)
            return describe(member.data, task.entry_point)
        if self.data_only:
            raise StageFailure(Status.FAILED, "code, in a run for candidates run as data only")
        try:
            function = load_entry_point(member.source, task.entry_point, filename="candidate.py")
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
            contract = contract_check(task, function, "candidate.py", [self.budget.name])
            if not contract.passed:
                raise StageFailure(Status.INVALID, contract.detail)
        member.function = function
        return f"loaded {task.entry_point}()"

    def _data(self, source: str) -> DataMember | None:
        if not self.shared_program:
            return None
        return member_data(source, self.task.entry_point, tuple(self.task.inputs))

    def trace(self, member: Member) -> str:
        loaded = self.load(member)
        config = trial_run(self.budget, self.split.meta_train[0]).config
        if not self.shared_program:  # no function of arrays to lower alone: lower its trainer
            lowered = self._lower(config, 1, [member])
            return f"lowered the {config.env_id} trainer ({self._cap(lowered, MAX_HLO_BYTES)})"
        # The function as the trainer calls it: minibatch-shaped float32 inputs, its value and
        # its derivative in the first input (the trainer differentiates through it).
        shapes = [jax.ShapeDtypeStruct((config.minibatch_size,), jnp.float32)] * len(
            self.task.inputs
        )

        def loss(*inputs):
            return jnp.sum(checked_call(self.plug_point, member.function, *inputs))

        lowered = jax.jit(jax.value_and_grad(loss)).lower(*shapes)
        size = self._cap(lowered, MAX_FUNCTION_HLO_BYTES)
        return f"{loaded}; lowered at the trainer's shapes ({size})"

    def _cap(self, lowered, limit: int) -> str:
        size = len((lowered.lowered if isinstance(lowered, LoweredBatch) else lowered).as_text())
        if size > limit:
            raise StageFailure(
                Status.FAILED,
                f"the program is {size / 1e6:.1f} MB of HLO (limit {limit / 1e6:.0f} MB): "
                "unrolled Python loops in the candidate?",
            )
        return f"{size / 1e3:.0f} kB HLO"

    def landscape(self, member: Member) -> str:
        if not self.task.piece.has_landscape:
            raise StageFailure(
                Status.FAILED,
                f"landscapes are defined for drift candidates, not {self.task.piece.kind}",
            )
        if member.function is None:
            self.load(member)
        ratio, advantage = landscape_axes()
        drift, slope = drift_landscape(member.function, ratio, advantage)
        if drift.shape != (advantage.size, ratio.size) or slope.shape != drift.shape:
            raise StageFailure(
                Status.INVALID,
                f"the drift returned shape {drift.shape} on a {ratio.size}-ratio grid",
            )
        np.savez(
            member.out / LANDSCAPE_FILE,
            ratio=ratio,
            advantage=advantage,
            drift=drift,
            d_objective_dr=slope,
        )
        return (
            f"{advantage.size} x {ratio.size} grid, "
            f"{int(np.isfinite(drift).sum())} finite drift values"
        )

    def validity(self, member: Member) -> str:
        proof_function = None
        if isinstance(member.data, Bytecode):  # bound the tree the interpreter runs
            proof_function = tree_function(member.data.tree, tuple(self.task.inputs))
        cache = self._checks_cache(member)
        report = _read_report(cache) if cache else None
        again = report is not None
        if report is None:
            report = run_conditions(
                self.task,
                member.function,
                "candidate.py",
                budgets=[self.budget.name],
                proof_function=proof_function,
            )
        stored = report.to_dict()
        if cache and not again:
            write_atomically(cache, json.dumps(stored).encode())
        write_json(member.out / "checks.json", stored)
        if not report.valid:
            raise StageFailure(
                Status.INVALID, "; ".join(f"{c.name}: {c.detail}" for c in report.failures)
            )
        # The trusted side compares this with the archive and may drop it as a duplicate.
        write_json(
            member.out / "signature.json",
            {"signature": behaviour_signature(self.task.piece, member.function)},
        )
        # An expression cannot tell a check from training (the interpreter runs it, with
        # elementwise operators only), so once proved it has nothing left to hide from the
        # monitor. Code can, and is always watched.
        assurance = report.assurance
        member.certified = isinstance(member.data, Bytecode) and assurance == Assurance.CERTIFIED
        proved = sum(1 for c in report.checks if c.proof and c.proof["verdict"] == Proof.PROVED)
        proofs = f", {proved} proved" if any(c.proof for c in report.checks) else ""
        before = ", as checked before" if again else ""
        return f"{len(report.checks)} conditions hold{proofs} ({assurance}{before})"

    def _checks_cache(self, member: Member) -> Path | None:
        """Where a run without candidate code keeps the check report of a member run as data:
        the report depends only on its source, the task, the budget's call lengths and the
        sandbox's code, and only such runs can write there (the program cache beside it)."""
        if self.exported is None or member.data is None:
            return None
        digest = hashlib.sha256()
        for part in (self.task.name, self.budget.name, member.source, sandbox_source_digest()):
            digest.update(f"{part}\0".encode())
        return self.exported.parent / "checks" / f"{digest.hexdigest()[:40]}.json"

    # -- the batch -------------------------------------------------------------------------
    def _watched(self, members: list[Member]) -> tuple[str, ...]:
        """The plug points the monitor watches: only the candidates' (the others hold trusted
        baselines), and none for a batch of certified expressions."""
        return () if all(m.certified for m in members) else (self.plug_point.value,)

    def _lower(self, config: PPOConfig, seeds: int, members: list[Member]) -> LoweredBatch:
        config = dataclasses.replace(config, monitor=self._watched(members))
        if self.shared_program:
            return lower_members(
                config,
                self.plug_point,
                [m.data or m.function for m in members],
                seeds=seeds,
                seed=self.seed,
                exported=self.exported,
            )
        (member,) = members
        components = Components(**{self.plug_point: member.function})
        return lower_batch(config, components, seeds=seeds, seed=self.seed)

    def _train(
        self, stage: str, config: PPOConfig, seeds: int, blocks: list[int]
    ) -> dict[str, dict[int, TrainingBatch]]:
        """Train every surviving member on each of `blocks` (indices into the request's
        seeds), one compile for all; one that breaks a shared program is found by lowering
        each alone, and only it fails."""
        groups = [self.alive()] if self.shared_program else [[m] for m in self.alive()]
        trained = {}
        for group in groups:
            start = time.monotonic()
            try:
                lowered = self._lower(config, seeds, group)
            except Exception as error:
                if len(group) == 1:
                    failure = failure_of(error)
                    group[0].record(stage, failure.status, time.monotonic() - start, failure.detail)
                    continue
                for member in group:
                    try:
                        self._lower(config, seeds, [member])
                    except Exception as alone:
                        failure = failure_of(alone)
                        member.record(
                            stage, failure.status, time.monotonic() - start, failure.detail
                        )
                group = [m for m in group if not m.failed]
                if not group:
                    continue
                lowered = self._lower(config, seeds, group)
            self._cap(lowered, MAX_HLO_BYTES + len(group) * MAX_FUNCTION_HLO_BYTES)
            compiled = lowered.compile()
            for block in blocks:
                batch = compiled.run(self.seeds[block])
                for index, member in enumerate(group):
                    trained.setdefault(member.name, {})[block] = (
                        batch.member(index) if self.shared_program else batch
                    )
        return trained

    def trial(self) -> None:
        run = trial_run(self.budget, self.split.meta_train[0])
        start = time.monotonic()
        trained = {
            name: blocks[0]
            for name, blocks in self._train(Stage.TRIAL, run.config, run.seeds, [0]).items()
        }
        seconds = time.monotonic() - start
        runs = f"{run.config.env_steps} steps x {run.seeds} seeds on {run.config.env_id}"
        shared = f" (one program for {len(trained)})" if len(trained) > 1 else ""
        if not self._watched(self.alive()):
            shared += ", unmonitored: certified expressions"
        for member in self.alive():
            output = trained[member.name].output
            if self._monitor_failed(member, Stage.TRIAL, output, seconds):
                continue
            leaves = jax.tree.leaves(output.params)
            if (
                not all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
                or not np.isfinite(output.entropy).all()
            ):
                member.record(Stage.TRIAL, Status.NONFINITE, seconds, f"{runs} gave NaN or inf")
                continue
            if run.is_full_run:
                member.trained[run.config.env_id, 0] = trained[member.name]
            kept = " (the full run, kept for the full stage)" if run.is_full_run else ""
            member.record(Stage.TRIAL, Status.OK, seconds, f"{runs}{kept}{shared}, finite")

    def full(self) -> None:
        start = time.monotonic()
        env_ids = sum(self.split.trained(self.fidelity).values(), ())
        blocks = range(len(self.seeds))
        for env_id in env_ids:
            waiting = [b for b in blocks if any((env_id, b) not in m.trained for m in self.alive())]
            if waiting:
                config = self.budget.config(env_id)
                trained = self._train("full", config, self.budget.seeds, waiting)
                for member in self.alive():
                    for block, batch in trained.get(member.name, {}).items():
                        member.trained.setdefault((env_id, block), batch)
            for member in self.alive():
                for block in blocks:
                    batch = member.trained.pop((env_id, block))
                    seconds = time.monotonic() - start
                    label = f", block {block}" if len(blocks) > 1 else ""
                    if self._monitor_failed(
                        member, Stage.FULL, batch.output, seconds, f" on {env_id}{label}"
                    ):
                        break
                    curve = pooled_learning_curve(batch.output, axis=(0, 1))
                    params = jax.tree.map(lambda x: x[0], batch.output.params)  # one learning rate
                    out = block_dir(member.out, block, len(blocks))
                    out.mkdir(exist_ok=True)
                    write_training_artifact(out, env_id, params, curve)
                    print(
                        f"{member.tag}trained {env_id}{label}: "
                        f"{batch.env_steps} steps in {batch.train_seconds:.1f} s",
                        flush=True,
                    )
        for member in self.alive():
            detail = f"{self.budget.seeds} seeds on {', '.join(env_ids)}"
            if len(blocks) > 1:
                detail += f", {len(blocks)} blocks of seeds"
            member.record(Stage.FULL, Status.OK, time.monotonic() - start, detail)

    def _monitor_failed(self, member: Member, stage: str, output, seconds, where="") -> bool:
        """Record the member invalid when the runtime monitor saw its piece break a condition
        during training (sandbox/training/monitor.py); the worst case, in words."""
        watch = output.watch.get(self.plug_point.value, {})
        broken = violations(watch, self.task.piece.monitor, where)
        if broken:
            member.record(
                stage, Status.INVALID, seconds, "; ".join(f"{c}: {text}" for c, text in broken)
            )
        return bool(broken)

    # -- running stages --------------------------------------------------------------------
    def run(self, stages: list[str]) -> int:
        for name in stages:
            if not self.alive():
                break
            self._batch_record({"stage": name, "event": "start", "time": time.time()})
            start = time.monotonic()
            if name in MEMBER_STAGES:
                for member in self.alive():
                    self._member_stage(member, name)
            else:
                try:
                    getattr(self, name)()
                except Exception as error:  # a crash of the shared program, or exhaustion
                    traceback.print_exc()
                    failure = failure_of(error)
                    for member in self.alive():
                        member.record(
                            name, failure.status, time.monotonic() - start, failure.detail
                        )
            self._batch_record({"stage": name, "seconds": time.monotonic() - start})
        return 0 if self.alive() else 1

    def _member_stage(self, member: Member, name: str) -> None:
        if self.named:  # unnamed, the member's records are the batch's
            append_stage(member.out, {"stage": name, "event": "start", "time": time.time()})
        start = time.monotonic()
        try:
            with settings_kept():
                detail, status = getattr(self, name)(member), Status.OK
        except StageFailure as failure:
            status, detail = failure.status, failure.detail
        except Exception as error:  # a crash in candidate code, or resource exhaustion
            traceback.print_exc()
            failure = failure_of(error)
            status, detail = failure.status, failure.detail
        member.record(name, status, time.monotonic() - start, detail)

    def _batch_record(self, record: dict) -> None:
        append_stage(self.out, record)


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    scratch = Path(request_path).resolve().parent.parent
    batch = Batch(request, scratch)
    if batch.named:  # it names every member's directories: gone before any candidate runs
        with contextlib.suppress(OSError):
            Path(request_path).unlink()
    return batch.run(request.get("stages", [Stage.TRACE, Stage.VALIDITY, *BATCH_STAGES]))


if __name__ == "__main__":
    # `-m` put the working directory, the writable scratch, first on sys.path: a module file
    # left there must never be what a later (lazy) import of this process loads.
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    sys.exit(main(sys.argv[1]))
