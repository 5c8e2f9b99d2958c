"""The evaluation cascade, run by the trusted side around a sandbox backend.

static checks (here, before anything executes) -> [in the sandbox: trace -> validity ->
trial -> full] -> the trusted scorer (a separate process that never imports the
candidate). The first failing stage stops the cascade with one of: rejected, invalid,
failed, timeout, oom, output_limit, nonfinite. Two outcomes are no verdict on the candidate:
`cancelled` (the caller stopped it) and `infra` (the sandbox backend itself failed, again
after retries); neither is ever recorded as the candidate's result.
"""

import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness.backends import Limits, SandboxInfraError, SandboxRun, get_backend
from harness.backends.filesystem import new_scratch, program_cache, scratch_root
from harness.outputs import OutputError, Outputs
from harness.scoring import score
from sandbox.artifacts import block_dir
from sandbox.budgets import get_budget
from sandbox.checks.pipeline import static_check
from sandbox.checks.report import CheckReport
from sandbox.pieces import Contract
from sandbox.tasks import load_task
from sandbox.training.members import member_data
from sandbox.vocabulary import STAGE_VERDICTS, Fidelity, Sandbox, Stage, Status

CANDIDATE_STAGES = (Stage.TRACE, Stage.VALIDITY, Stage.TRIAL, Stage.FULL)
STAGE_SECONDS = {Stage.TRACE: 180.0, Stage.VALIDITY: 120.0, Stage.TRIAL: 180.0}
LOG_TAIL_CHARS = 4000
INFRA_RETRY_SECONDS = (2.0, 10.0)  # waits before the second and third try after a backend failure


@dataclass
class StageRecord:
    name: str
    status: str
    seconds: float
    detail: str = ""


@dataclass
class Evaluation:
    status: str
    fitness: float | None
    meta_test_fitness: float | None = None
    per_env: dict = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    checks: dict | None = None  # the validity report, counterexamples included
    log_tail: str = ""
    backend: str = ""
    isolation: tuple[str, ...] = ()
    seconds: float = 0.0
    signature: str | None = None  # behaviour signature from the validity stage
    duplicate_of: int | None = None  # set when status is "duplicate"
    # Trained on several blocks of seeds in one run (`further_blocks`): one evaluation per
    # block, the first included, each as if that block had run alone. Empty otherwise.
    blocks: list["Evaluation"] = field(default_factory=list)
    fidelity: str = Fidelity.FULL  # the environments trained: a Fidelity

    def per_block(self) -> list["Evaluation"]:
        """One evaluation per block of seeds it trained on (itself, for one block)."""
        return self.blocks or [self]

    def to_dict(self) -> dict:
        return asdict(self)


class _BatchWatch:
    """Per-stage time limits, from the stage records the sandboxed stages append, and the
    behaviour-signature claims of the batch's members. The records are written by the
    untrusted process, so they only ever shorten its time: the backend's overall wall-clock
    limit still holds."""

    def __init__(
        self,
        records: Outputs,
        members: dict[str, Outputs],
        limits: dict[str, float],
        claims: list | None = None,
        cancelled=None,
    ):
        self.records, self.limits, self.seen = records, limits, {}
        self.batch_limits = {stage: seconds * len(members) for stage, seconds in limits.items()}
        self.dirs = members  # each member's out directory
        self.cancelled = cancelled or (lambda: False)
        self.expired: str | None = None
        self.claims = dict(zip(members, claims or [None] * len(members), strict=True))
        self.signatures: dict[str, str] = {}  # "" for a malformed one: never deduplicated
        self.duplicate_of: dict[str, int] = {}

    def check_signatures(self) -> None:
        """Once a member's validity stage has left its behaviour signature, ask the archive
        whether an earlier candidate behaves the same; if so it is a duplicate."""
        for name, claim in self.claims.items():
            if claim is None or name in self.signatures:
                continue
            try:
                signature = json.loads(self.dirs[name].read("signature.json"))["signature"]
            except OutputError:  # not a file: never deduplicated, and it fails anyway
                self.signatures[name] = ""
                continue
            except (ValueError, KeyError, TypeError):  # none yet (None), or half written
                continue
            if not (
                isinstance(signature, str) and 0 < len(signature) <= 64 and signature.isalnum()
            ):
                self.signatures[name] = ""
                continue
            self.signatures[name] = signature
            duplicate_of = claim(signature)
            if duplicate_of is not None:
                self.duplicate_of[name] = duplicate_of

    def decided(self) -> bool:
        """Every member is a duplicate or has failed a stage: nothing left worth training."""
        return bool(self.duplicate_of) and all(
            name in self.duplicate_of or _has_failed(outputs) for name, outputs in self.dirs.items()
        )

    def current(self, outputs: Outputs | None = None) -> str | None:
        """The stage running now: the batch's, or a member's (`outputs`: its out directory)."""
        started, ended = [], set()
        try:
            text = ((outputs or self.records).read("stages.jsonl") or b"").decode(errors="replace")
            for line in text.splitlines()[:1000]:
                record = json.loads(line)
                (
                    started.append(record["stage"])
                    if record.get("event") == "start"
                    else ended.add(record.get("stage"))
                )
        except (OutputError, ValueError, KeyError, TypeError, AttributeError):
            pass
        running = [s for s in started if s not in ended]
        return running[-1] if running else None

    def running_member(self) -> str | None:
        """The member whose own stage was running when the process ended, by its records: a
        hint for splitting the batch, never a verdict."""
        return next((n for n, p in self.dirs.items() if self.current(p)), None)

    def __call__(self) -> bool:
        if self.cancelled():
            return True
        self.check_signatures()
        if self.decided():
            return True
        # A member's own stage has its own limit; a stage of the whole batch, its limit for
        # every member it runs (`batch_limits`).
        running = [(name, self.current(path)) for name, path in self.dirs.items()]
        running.append(("", self.current()))
        for name, stage in running:
            if stage is None:
                continue
            limit = (self.batch_limits if name == "" else self.limits).get(stage, float("inf"))
            first_seen = self.seen.setdefault((name, stage), time.monotonic())
            if time.monotonic() - first_seen > limit:
                self.expired = stage
                return True
        return False


def _read_stage_records(outputs: Outputs) -> list[StageRecord]:
    """A member's stage records, as far as they parse; OutputError when its stages.jsonl is
    not a file."""
    records = []
    lines = (outputs.read("stages.jsonl") or b"").decode(errors="replace").splitlines()
    for line in lines[:100]:
        try:
            r = json.loads(line)
            if (
                "status" in r
                and r.get("stage") in CANDIDATE_STAGES
                and r["status"] in STAGE_VERDICTS
            ):
                records.append(
                    StageRecord(
                        r["stage"],
                        r["status"],
                        float(r["seconds"]),
                        str(r.get("detail", ""))[:2000],
                    )
                )
        except (ValueError, TypeError, KeyError):
            continue
    return records


def _has_failed(outputs: Outputs) -> bool:
    try:
        return any(r.status != Status.OK for r in _read_stage_records(outputs))
    except OutputError:
        return True


def evaluate_candidate(
    task: str,
    source: str,
    budget: str,
    *,
    claim_signature=None,
    **options,
) -> Evaluation:
    """Run the whole cascade on one candidate source: a batch of one (see evaluate_batch)."""
    return evaluate_batch(task, [source], budget, claims=[claim_signature], **options)[0]


@dataclass(frozen=True)
class EvaluationRequest:
    """One batch for the cascade, as executors receive it (scientist/executors).

    `claims[i](signature)` (optional) returns the id of an earlier candidate with the same
    behaviour, or None after recording member i's; a duplicate gets status "duplicate" and
    no fitness. When `cancelled()` turns true the sandbox is killed and every member still
    running is "cancelled": no verdict at all. `eval_seed` (trusted callers only, never the
    sandbox) fixes the scorer's evaluation episodes, so candidates scored apart are compared
    on the same ones; by default the scorer draws one per run. `further_blocks` are more
    (training seed, evaluation seed) blocks to train and score after (`seed`, `eval_seed`)
    in the same run: one process, one pass of checks and one compile per environment for
    all of them; each Evaluation then lists every block's in `blocks`. `fidelity` SCREEN
    trains and scores the meta-train environments alone (meta_test_fitness None). Claims
    and `cancelled` are the caller's callbacks: an executor that runs the batch elsewhere
    relays them (executors/ray.py) and never sends them."""

    task: str
    sources: Sequence[str]
    budget: str
    sandbox: str = Sandbox.AUTO
    seed: int = 0
    eval_seed: int | None = None
    further_blocks: Sequence[tuple[int, int | None]] = ()
    fidelity: Fidelity = Fidelity.FULL
    claims: Sequence[Callable[[str], int | None] | None] | None = None
    cancelled: Callable[[], bool] | None = None

    def __post_init__(self):
        object.__setattr__(self, "fidelity", Fidelity(self.fidelity))

    def part(self, start: int, stop: int) -> "EvaluationRequest":
        """The same request for sources[start:stop] (a batch split after a crash)."""
        claims = None if self.claims is None else self.claims[start:stop]
        return replace(self, sources=self.sources[start:stop], claims=claims)


def evaluate_batch(task: str, sources: list[str], budget: str, **options) -> list[Evaluation]:
    """`evaluate` with the request's fields (and `gpu`, `stage_seconds`, `limits`) by name."""
    local = {k: options.pop(k) for k in ("gpu", "stage_seconds", "limits") if k in options}
    return evaluate(EvaluationRequest(task, sources, budget, **options), **local)


def evaluate(
    request: EvaluationRequest,
    *,
    gpu: bool = False,
    stage_seconds: dict[str, float] | None = None,
    limits: Limits | None = None,
) -> list[Evaluation]:
    """Run the cascade on a batch of candidate sources, in one sandbox run and one scorer
    run; one Evaluation each, in order, as if each had run alone (same seeds, same numbers).

    A run that dies (time limit, memory, a signal) is split and run again until the member
    that kills it runs alone and gets its own verdict. A failure of the backend itself
    (SandboxInfraError) is retried from scratch; if it persists the status is "infra", with
    the one-line reason as the last stage: no verdict either. `gpu` (the executor's choice),
    `stage_seconds` and `limits` (tests) shape the local sandbox run."""
    task, sources, budget = request.task, list(request.sources), request.budget
    seed, eval_seed, fidelity = request.seed, request.eval_seed, request.fidelity
    blocks = [(seed, eval_seed), *request.further_blocks]
    claims = list(request.claims or [None] * len(sources))
    results: list[Evaluation | None] = [None] * len(sources)
    statics = []
    for index, source in enumerate(sources):
        start = time.monotonic()
        checked = static_check(source)
        seconds = time.monotonic() - start
        if checked.passed:
            statics.append(StageRecord(Stage.STATIC, Status.OK, seconds))
            continue
        statics.append(None)
        results[index] = Evaluation(
            Status.REJECTED,
            None,
            stages=[StageRecord(Stage.STATIC, Status.REJECTED, seconds, checked.detail)],
            checks=CheckReport([checked]).to_dict(),
            seconds=seconds,
        )
    pending = [i for i, r in enumerate(results) if r is None]
    if pending:
        runner = _BatchRunner(
            get_backend(request.sandbox),
            task,
            budget,
            blocks,
            fidelity,
            stage_seconds,
            limits,
            request.cancelled,
            gpu,
        )
        start = time.monotonic()
        evaluations = runner.run([sources[i] for i in pending], [claims[i] for i in pending])
        share = (time.monotonic() - start) / len(pending)  # of the batch's wall time
        for index, evaluation in zip(pending, evaluations, strict=True):
            if evaluation.status != Status.CANCELLED:  # no verdict: no stages either
                for each in (evaluation, *evaluation.blocks):
                    each.stages.insert(0, statics[index])
            evaluation.seconds = statics[index].seconds + share
            results[index] = evaluation
    for evaluation in results:
        for each in (evaluation, *evaluation.blocks):
            each.fidelity = fidelity
    if request.further_blocks:
        for evaluation in results:
            _share_out(evaluation, len(blocks))
    return results


def data_kind(task: str, source: str) -> str | None:
    """The kind of data the sandbox runs this candidate as ("Bytecode" for an expression,
    "LPONetwork" for a rendered network; no candidate code runs), None for code it loads. A
    batch of one kind shares one compiled, cached program."""
    spec = load_task(task)
    if spec.piece.contract is not Contract.ELEMENTWISE:
        return None
    data = member_data(source, spec.entry_point, tuple(spec.inputs))
    return None if data is None else type(data).__name__


def program_groups(task: str, sources: Sequence[str]) -> list[list[int]]:
    """The indices of `sources` by the kind of data they run as (expressions, networks), then
    those that are code (empty groups left out): batched apart, each kind runs its shared,
    cached program, where in a mixed batch every member compiles afresh. The numbers are the
    same either way."""
    kinds = [data_kind(task, s) for s in sources]
    order = sorted(set(kinds), key=lambda kind: (kind is None, kind or ""))
    return [[i for i, kind in enumerate(kinds) if kind == k] for k in order]


def _share_out(evaluation: Evaluation, blocks: int) -> None:
    """Every block of a multi-block evaluation: a member never scored has the same verdict on
    each; the time is shared out between them."""
    evaluation.blocks = evaluation.blocks or [_copy(evaluation) for _ in range(blocks)]
    for block in evaluation.blocks:
        block.seconds = evaluation.seconds / blocks


def _copy(evaluation: Evaluation) -> Evaluation:
    return replace(evaluation, stages=list(evaluation.stages), blocks=[])


def _lay_out(
    scratch: Path, members: list[str], sources: list[str]
) -> tuple[Outputs, dict[str, Outputs], list[dict]]:
    """The batch's directories in `scratch`, each named by a random token: the batch's stage
    records, and each member's source (in/<token>/candidate.py, read-only in the sandbox)
    and out directory (out/<token>). No member can guess another's names, so none can reach
    another's files (sandbox/stages.py). Returns the records, each member's out directory,
    and the members as the request names them."""

    def fresh(parent: Path) -> Path:
        path = parent / secrets.token_hex(16)
        path.mkdir(parents=True)
        return path

    records = Outputs(scratch, fresh(scratch / "out"))
    outputs, places = {}, []
    for name, source in zip(members, sources, strict=True):
        source_file = fresh(scratch / "in") / "candidate.py"
        source_file.write_text(source)
        outputs[name] = Outputs(scratch, fresh(scratch / "out"))
        places.append({"name": name, "source": str(source_file), "out": str(outputs[name].path)})
    return records, outputs, places


class _BatchRunner:
    """Sandbox runs of batches: infra retries, and splitting a batch whose process died."""

    def __init__(
        self, backend, task, budget, blocks, fidelity, stage_seconds, limits, cancelled, gpu
    ):
        self.backend, self.task, self.budget, self.blocks = backend, task, budget, blocks
        self.fidelity = fidelity
        full = get_budget(budget).full_seconds * len(blocks)  # every block is another full run
        self.stage_limits = {
            **STAGE_SECONDS,
            Stage.FULL: full,
            **{Stage(name): seconds for name, seconds in (stage_seconds or {}).items()},
        }
        self.limits, self.cancelled, self.gpu = limits, cancelled, gpu

    def run(self, sources: list[str], claims: list) -> list[Evaluation]:
        start = time.monotonic()
        for wait in (*INFRA_RETRY_SECONDS, None):
            try:
                return self._run_once(sources, claims)
            except SandboxInfraError as error:
                if wait is None or (self.cancelled is not None and self.cancelled()):
                    failure = StageRecord(
                        Stage.SANDBOX,
                        Status.INFRA,
                        time.monotonic() - start,
                        f"{error} (tried {len(INFRA_RETRY_SECONDS) + 1} times)",
                    )
                    return [
                        Evaluation(Status.INFRA, None, stages=[failure], backend=self.backend.name)
                        for _ in sources
                    ]
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _run_once(self, sources: list[str], claims: list) -> list[Evaluation]:
        """One sandbox run of the batch and one scorer run for its survivors. SandboxInfraError
        when the backend fails under the candidates."""
        k = len(sources)
        limits = self.limits or Limits(wall_seconds=sum(self.stage_limits.values()) * k + 60.0)
        members = [str(i) for i in range(k)]
        scratch = new_scratch()
        try:
            records, outputs, places = _lay_out(scratch, members, sources)
            request = {
                "task": self.task,
                "budget": self.budget,
                "seed": self.blocks[0][0],
                "fidelity": self.fidelity,
            }
            if len(self.blocks) > 1:
                request["seeds"] = [training_seed for training_seed, _ in self.blocks]
            # A batch run as data executes no candidate code (the sandbox runs trusted code on
            # it), so it may write the compilation cache the next such batch reads.
            cache = program_cache() if self._data_only(sources) else None
            if cache is not None:
                cache.mkdir(exist_ok=True)
                request.update(data_only=True, compilation_cache=str(cache))
            # Beside in/, not in it: the stages delete it (it holds the tokens) once read.
            request_file = scratch / "request.json"
            request_file.write_text(
                json.dumps({**request, "records": str(records.path), "members": places})
            )
            watch = _BatchWatch(records, outputs, self.stage_limits, claims, self.cancelled)
            # The devices a scheduler (Ray, a batch system) gave this process are the sandbox's.
            visible = {
                k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES",) if self.gpu and k in os.environ
            }
            outcome = self.backend.run(
                SandboxRun(
                    ("-m", "sandbox.stages", str(request_file)),
                    scratch,
                    limits,
                    env=visible,
                    gpu=self.gpu,
                    watchdog=watch,
                    cache=cache,
                    read_only=(scratch / "in",),
                )
            )
            if watch.cancelled():
                return [
                    Evaluation(Status.CANCELLED, None, backend=self.backend.name) for _ in members
                ]
            watch.check_signatures()  # in case the run ended between two watchdog polls
            evaluations = [
                self._member_evaluation(outputs[name], name, outcome, watch) for name in members
            ]
            undecided = [e for e in evaluations if e.status == Status.PENDING]
            if undecided and k > 1:  # the run ended before their verdicts: who killed it?
                return self._split(sources, claims, evaluations, watch)
            if undecided:
                _charge_death(evaluations[0], outcome, watch)
            scored = [i for i, e in enumerate(evaluations) if e.status == Status.OK]
            if scored:
                self._score(evaluations, [outputs[members[i]].path for i in scored], scored)
            return evaluations
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _score(self, evaluations, dirs: list[Path], scored: list[int]) -> None:
        """One scorer run for every block of every trained member; with one block the
        member's evaluation takes its verdict, with several each block's copy takes its own
        and the member's takes the first's."""
        count = len(self.blocks)
        jobs = [(d, b) for d in dirs for b in range(count)]
        # Its request lies outside the scratch: a name the sandbox left there (a link, a
        # directory) must not be what the trusted side writes through.
        handle, request = tempfile.mkstemp(prefix="score-", suffix=".json", dir=scratch_root())
        os.close(handle)
        try:
            verdicts = score(
                Path(request),
                self.task,
                self.budget,
                [block_dir(d, b, count) for d, b in jobs],
                [self.blocks[b][1] for _, b in jobs],
                [self.blocks[b][0] for _, b in jobs],
                self.fidelity,
            )
        finally:
            os.unlink(request)
        for n, i in enumerate(scored):
            mine = verdicts[n * count : (n + 1) * count]
            if count > 1:
                evaluations[i].blocks = [_copy(evaluations[i]) for _ in mine]
                for block, verdict in zip(evaluations[i].blocks, mine, strict=True):
                    _apply_score(block, verdict)
            _apply_score(evaluations[i], mine[0])

    def _data_only(self, sources: list[str]) -> bool:
        return self.backend.isolates_files and all(data_kind(self.task, s) for s in sources)

    def _member_evaluation(
        self, outputs: Outputs, name: str, outcome, watch: _BatchWatch
    ) -> Evaluation:
        try:
            stages = _read_stage_records(outputs)
        except OutputError:
            stages = []
        evaluation = Evaluation(
            Status.OK,
            None,
            stages=stages,
            log_tail=_member_log(outcome.log_tail, name)[-LOG_TAIL_CHARS:],
            backend=self.backend.name,
            isolation=outcome.isolation,
            checks=_read_checks(outputs),
            signature=watch.signatures.get(name) or None,
        )
        try:
            outputs.check()  # all of it, before the scorer opens its artifacts by path
        except OutputError as problem:  # this member's failure alone, whoever caused it
            stages.append(
                StageRecord(
                    Stage.SANDBOX,
                    Status.FAILED,
                    outcome.seconds,
                    f"its outputs are not as the stages leave them: {problem}",
                )
            )
            evaluation.status = Status.FAILED
            return evaluation
        if name in watch.duplicate_of:
            evaluation.duplicate_of = watch.duplicate_of[name]
            stages.append(
                StageRecord(
                    "signature",
                    Status.DUPLICATE,
                    outcome.seconds,
                    f"behaves like candidate {evaluation.duplicate_of} on the signature grid",
                )
            )
            evaluation.status = Status.DUPLICATE
            return evaluation
        failed = next((s for s in stages if s.status != Status.OK), None)
        if failed is not None:
            evaluation.status = failed.status
        elif any(s not in {r.name for r in stages} for s in CANDIDATE_STAGES):
            evaluation.status = Status.PENDING  # no verdict yet: the run ended before it had one
        return evaluation

    def _split(self, sources, claims, evaluations, watch) -> list[Evaluation]:
        """Members with a verdict keep it; the rest run again in two groups, the member the
        records point at (if any) alone, so whoever kills the run ends up alone."""
        undecided = [i for i, e in enumerate(evaluations) if e.status == Status.PENDING]
        hint = watch.running_member()
        if hint is not None and int(hint) in undecided:
            groups = [[int(hint)], [i for i in undecided if i != int(hint)]]
        else:
            half = max(1, len(undecided) // 2)
            groups = [undecided[:half], undecided[half:]]
        for group in (g for g in groups if g):
            again = self.run([sources[i] for i in group], [claims[i] for i in group])
            for i, evaluation in zip(group, again, strict=True):
                evaluations[i] = evaluation
        return evaluations


def _charge_death(evaluation: Evaluation, outcome, watch: _BatchWatch) -> None:
    """A run of one member that ended before its verdict: what ended it is the verdict.
    Signals and limits observed here outrank what the untrusted stage records claim."""
    stages = evaluation.stages
    if outcome.timed_out:
        stage = watch.expired or watch.current() or Stage.SANDBOX
        record = StageRecord(stage, Status.TIMEOUT, outcome.seconds, "killed at its time limit")
    elif outcome.output_exceeded:
        record = StageRecord(
            Stage.SANDBOX,
            Status.OUTPUT_LIMIT,
            outcome.seconds,
            "printed more than its output budget",
        )
    elif outcome.killed_by_signal is not None:
        sig = outcome.killed_by_signal
        status = {signal.SIGKILL: Status.OOM, signal.SIGXCPU: Status.TIMEOUT}.get(
            sig, Status.FAILED
        )
        record = StageRecord(
            watch.current() or Stage.SANDBOX, status, outcome.seconds, f"killed by signal {sig}"
        )
    else:
        record = StageRecord(
            Stage.SANDBOX, Status.FAILED, outcome.seconds, f"exit code {outcome.exit_code}"
        )
    stages.append(record)
    evaluation.status = record.status
    evaluation.fitness = None


def _member_log(log: str, name: str) -> str:
    """The batch's log as one member sees it: its own tagged lines (tag removed) and the
    untagged ones (the shared program's, and prints nobody can be told apart by)."""
    tag, lines = f"[member {name}] ", []
    for line in log.splitlines():
        if line.startswith(tag):
            lines.append(line[len(tag) :])
        elif not line.startswith("[member "):
            lines.append(line)
    return "\n".join(lines)


def _apply_score(evaluation: Evaluation, verdict: dict) -> None:
    evaluation.stages.append(
        StageRecord(Stage.SCORE, verdict["status"], verdict["seconds"], verdict.get("detail", ""))
    )
    evaluation.status = verdict["status"]
    if verdict["status"] == Status.OK:
        evaluation.fitness = verdict["fitness"]
        evaluation.meta_test_fitness = verdict["meta_test_fitness"]
        evaluation.per_env = verdict["per_env"]


def _read_checks(outputs: Outputs) -> dict | None:
    try:
        data = json.loads(outputs.read("checks.json"))
        return data if isinstance(data, dict) and isinstance(data.get("checks"), list) else None
    except (OutputError, ValueError, TypeError):
        return None
