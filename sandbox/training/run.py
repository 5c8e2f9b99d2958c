"""Compile, run and score a batch of training runs (seeds x learning rates, and optionally
candidates for one plug point) for one environment.

Training is one compiled call; evaluation of the final policies is a second one with its own
seed, so a scorer can re-run it on the parameters alone.
"""

import contextlib
import fcntl
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import expressions as ex
from sandbox.artifacts import write_atomically
from sandbox.budgets import EnvBudget
from sandbox.fitness import Aggregate, normalise
from sandbox.training.bytecode import encode
from sandbox.training.config import PPOConfig
from sandbox.training.evaluate import evaluate_params
from sandbox.training.members import RUNNERS, DataMember, as_function
from sandbox.training.ppo import Components, TrainOutput, batched, batched_members, make_train

# A batch of members fills slots in multiples of this, the empty ones never trained: one
# program (exported once, compiled once) serves every batch of up to 8 (a campaign's default).
MEMBER_SLOTS = 8

# Called as progress(phase, completed, total) with phase in {"compile", "train", "evaluate"}.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class TrainingBatch:
    """Raw outputs of one compiled call: leading axes [learning_rates, seeds]."""

    config: PPOConfig
    learning_rates: list[float]
    output: TrainOutput
    compile_seconds: float
    train_seconds: float

    @property
    def env_steps(self) -> int:
        return self.config.env_steps * int(np.prod(self.output.episode_count.shape[:-1]))

    def member(self, index: int) -> "TrainingBatch":
        """Member `index` of a batch from `lower_members` (leading axes [members, lrs, seeds]);
        the seconds are the whole batch's."""
        output = jax.tree.map(lambda x: x[index], self.output)
        return TrainingBatch(
            self.config, self.learning_rates, output, self.compile_seconds, self.train_seconds
        )


@dataclass(frozen=True)
class LoweredBatch:
    """A batch traced and lowered but not compiled, so its program can be inspected first."""

    config: PPOConfig
    learning_rates: list[float]
    # (seed keys [S], learning rates [L][, members: branch index [K], bytecode, member count])
    args: tuple
    lowered: Any
    lower_seconds: float
    lock: Path | None = None  # an exported program's lock: one process compiles it at a time

    @property
    def hlo_bytes(self) -> int:
        return len(self.lowered.as_text())

    def compile(self) -> "CompiledBatch":
        start = time.perf_counter()
        with held(self.lock):
            compiled = self.lowered.compile()
        return CompiledBatch(self, compiled, self.lower_seconds + time.perf_counter() - start)


@dataclass(frozen=True)
class CompiledBatch:
    program: LoweredBatch
    compiled: Any
    compile_seconds: float  # tracing and lowering included

    def run(self, seed: int | None = None) -> TrainingBatch:
        """Train on the seed keys it was lowered with, or on those split from `seed`: the same
        program with other keys, so the same numbers as a batch lowered with `seed`."""
        keys, *rest = self.program.args
        if seed is not None:
            keys = jax.random.split(jax.random.key(seed), keys.shape[0])
        start = time.perf_counter()
        output = jax.block_until_ready(self.compiled(keys, *rest))
        train_seconds = time.perf_counter() - start
        return TrainingBatch(
            self.program.config,
            self.program.learning_rates,
            output,
            self.compile_seconds,
            train_seconds,
        )


def lower_batch(
    config: PPOConfig,
    components: Components | None = None,
    *,
    seeds: int,
    seed: int = 0,
    learning_rates: Sequence[float] | None = None,
    on_update: Callable[[Any], None] | None = None,
) -> LoweredBatch:
    """Trace `seeds` x `learning_rates` training runs as one program (seed keys split from
    `seed`, as in every batch)."""
    start = time.perf_counter()
    lrs = [float(lr) for lr in (learning_rates or [config.learning_rate])]
    train = make_train(config, components, on_update=on_update)
    args = (jax.random.split(jax.random.key(seed), seeds), jnp.asarray(lrs, dtype=jnp.float32))
    lowered = jax.jit(batched(train)).lower(*args)
    return LoweredBatch(config, lrs, args, lowered, time.perf_counter() - start)


def lower_members(
    config: PPOConfig,
    plug_point: str,
    members: Sequence[Callable | DataMember],
    *,
    seeds: int,
    seed: int = 0,
    exported: Path | None = None,
) -> LoweredBatch:
    """Trace `seeds` training runs for each member at `plug_point` as one program, on the
    seed keys `lower_batch` would use: every member trains on the same seeds. A member is a
    function (a branch of its own) or data (Bytecode, LPONetwork) for its kind's one runner
    branch, so a batch of one kind of data lowers to the same computation whichever members
    they are; with `exported` (a directory only runs without candidate code write) such a
    batch reuses the trainer exported there. Data of a second kind in one batch runs as a
    function of its own."""
    start = time.perf_counter()
    kind = next((type(m) for m in members if type(m) in RUNNERS), None)
    own = [kind is not None and isinstance(m, kind) for m in members]  # in the runner's branch
    functions = [as_function(m) for m, mine in zip(members, own, strict=True) if not mine]
    branches = [RUNNERS[kind]] if kind else []
    branches += [lambda data, *args, f=f: f(*args) for f in functions]
    empty = members[own.index(True)].empty() if kind else encode(ex.Const(0.0), ())
    index, data, code = [], [], iter(range(len(branches) - len(functions), len(branches)))
    for member, mine in zip(members, own, strict=True):
        index.append(0 if mine else next(code))
        data.append(member.slot() if mine else empty.slot())
    slots = -(-len(members) // MEMBER_SLOTS) * MEMBER_SLOTS  # empty slots are never trained
    index += [0] * (slots - len(members))
    data += [empty.slot()] * (slots - len(members))
    stacked = tuple(jnp.asarray(np.stack(column)) for column in zip(*data, strict=True))
    lrs = [float(config.learning_rate)]
    args = (
        jax.random.split(jax.random.key(seed), seeds),
        jnp.asarray(lrs, dtype=jnp.float32),
        (jnp.asarray(index, dtype=jnp.int32), stacked, jnp.asarray(len(members), jnp.int32)),
    )
    trainer = jax.jit(batched_members(config, plug_point, branches))
    if exported is None or functions:
        lowered = trainer.lower(*args)
        return LoweredBatch(config, lrs, args, lowered, time.perf_counter() - start)
    shapes = [(a.shape, str(a.dtype)) for a in stacked]
    key = _export_key(config, plug_point, kind.__name__, shapes, seeds)
    path = exported / f"{key}.jax-exported"
    lock = path.with_suffix(".lock")
    with held(lock):
        lowered = _lower_exported(trainer, args, path)
    return LoweredBatch(config, lrs, args, lowered, time.perf_counter() - start, lock)


# -- exported trainers of bytecode batches ---------------------------------------------------
# Lowering a trainer traces it (seconds per environment); its exported StableHLO does not
# depend on which bytecode it runs, so a bytecode batch loads the one exported before and
# lowers only a call to it, which the persistent compilation cache then also finds. Sandboxes
# started together (a campaign's workers, a test's) would each export and compile the same
# program; a lock beside it makes the later ones wait and read what the first wrote.


@contextlib.contextmanager
def held(lock: Path | None) -> Iterator[None]:
    """An exclusive lock on the file `lock` (made if missing) for the block; none for None.
    The kernel drops it when the process dies, so a killed sandbox never leaves it held."""
    if lock is None:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _export_key(config: PPOConfig, plug_point: str, kind: str, shapes: list, seeds: int) -> str:
    """What the exported program depends on: the run, the kind of data and its shapes (the
    member slots included), this trainer's code and the JAX that wrote it."""
    import hashlib

    digest = hashlib.sha256()
    parts = (repr(config), plug_point, kind, shapes, seeds, jax.__version__, jax.default_backend())
    for part in parts:
        digest.update(f"{part}\0".encode())
    digest.update(sandbox_source_digest().encode())
    return digest.hexdigest()[:40]


@functools.cache
def sandbox_source_digest() -> str:
    """Of every module of the sandbox package: what a cached program or check report was
    made by."""
    import hashlib

    import sandbox

    digest = hashlib.sha256()
    root = Path(sandbox.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _register_output_serialization() -> None:
    from jax import export

    export.register_namedtuple_serialization(TrainOutput, serialized_name="sandbox.TrainOutput")


def _lower_exported(trainer, args: tuple, path: Path):
    from jax import export

    _register_output_serialization()
    try:
        program = export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # none yet, or unreadable: export it (again)
        program = export.export(trainer)(*args)
        write_atomically(path, program.serialize())
    return jax.jit(program.call).lower(*args)


def train_batch(
    config: PPOConfig,
    components: Components | None = None,
    *,
    seeds: int,
    seed: int = 0,
    learning_rates: Sequence[float] | None = None,
    progress: ProgressFn | None = None,
) -> TrainingBatch:
    on_update = None
    if progress is not None:
        on_update = lambda update: progress("train", int(np.max(update)) + 1, config.num_updates)  # noqa: E731
    report = progress or (lambda *_: None)
    report("compile", 0, 1)
    program = lower_batch(
        config,
        components,
        seeds=seeds,
        seed=seed,
        learning_rates=learning_rates,
        on_update=on_update,
    ).compile()
    report("compile", 1, 1)
    return program.run()


def evaluate_batch(batch: TrainingBatch, *, eval_seed: int) -> np.ndarray:
    """Mean return over `eval_episodes` episodes for every trained policy:
    [learning_rates, seeds]."""
    leading = batch.output.episode_count.shape[:2]
    return np.asarray(evaluate_params(batch.config, batch.output.params, eval_seed, leading))


@dataclass(frozen=True)
class TrainingSummary:
    """What a caller needs to know about one learning rate's runs on one environment."""

    env: str
    seeds: int
    timesteps: int  # environment steps per seed actually taken
    learning_rate: float
    final_returns: list[float]
    returns: Aggregate
    normalised: Aggregate | None
    normalised_scores: list[float] | None
    learning_curve: list[
        float | None
    ]  # mean return of episodes ended in each update, all seeds pooled

    def to_dict(self) -> dict[str, Any]:
        data = {
            "env": self.env,
            "seeds": self.seeds,
            "timesteps": self.timesteps,
            "learning_rate": self.learning_rate,
            "final_returns": self.final_returns,
            "iqm": self.returns.iqm,
            "ci_low": self.returns.ci_low,
            "ci_high": self.returns.ci_high,
            "mean": self.returns.mean,
            "median": self.returns.median,
            "normalised": None,
            "learning_curve": self.learning_curve,
        }
        if self.normalised is not None:
            data["normalised"] = {
                "scores": self.normalised_scores,
                "iqm": self.normalised.iqm,
                "ci_low": self.normalised.ci_low,
                "ci_high": self.normalised.ci_high,
            }
        return data


def pooled_learning_curve(output: TrainOutput, axis) -> np.ndarray:
    """Mean return of the episodes that ended in each update, pooling the seeds on `axis`;
    NaN for updates in which none ended."""
    returns = np.asarray(output.episode_return_sum).sum(axis=axis)
    counts = np.asarray(output.episode_count).sum(axis=axis)
    return np.where(counts > 0, returns / np.maximum(counts, 1), np.nan)


def summarise(
    batch: TrainingBatch, final_returns: np.ndarray, reference: EnvBudget | None = None
) -> list[TrainingSummary]:
    """One summary per learning rate. `reference` normalises scores when the run matches a
    budget."""
    curves = pooled_learning_curve(batch.output, axis=1)  # [learning rates, updates]
    return summarise_returns(batch.config, batch.learning_rates, final_returns, curves, reference)


def summarise_returns(
    config: PPOConfig,
    learning_rates: Sequence[float],
    final_returns: np.ndarray,
    curves: np.ndarray,
    reference: EnvBudget | None = None,
) -> list[TrainingSummary]:
    """`summarise` from the numbers alone: final returns [learning rates, seeds] and
    learning curves [learning rates, updates], NaN where no episode ended (a sandboxed run
    reports them: sandbox/training/plan.py)."""
    final_returns, curves = np.asarray(final_returns), np.asarray(curves, dtype=np.float64)
    summaries = []
    for i, lr in enumerate(learning_rates):
        per_seed = final_returns[i]
        normalised = None
        if reference is not None:
            normalised = normalise(
                per_seed, random_return=reference.random_return, ppo_return=reference.ppo_return
            )
        curve = [float(x) if np.isfinite(x) else None for x in curves[i]]
        summaries.append(
            TrainingSummary(
                env=config.env_id,
                seeds=per_seed.size,
                timesteps=config.env_steps,
                learning_rate=float(lr),
                final_returns=[float(x) for x in per_seed],
                returns=Aggregate.of(per_seed),
                normalised=Aggregate.of(normalised) if normalised is not None else None,
                normalised_scores=[float(x) for x in normalised]
                if normalised is not None
                else None,
                learning_curve=curve,
            )
        )
    return summaries
