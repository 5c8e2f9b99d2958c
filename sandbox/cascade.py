"""The evaluation cascade, run by the trusted side around a sandbox backend.

static checks (here, before anything executes) -> [in the sandbox: trace -> validity ->
smoke -> full] -> the trusted scorer (a separate process that never imports the
candidate). The first failing stage stops the cascade with one of: rejected, invalid,
failed, timeout, oom, output_limit, nonfinite. Two outcomes are no verdict on the candidate:
`cancelled` (the caller stopped it) and `infra` (the sandbox backend itself failed, again
after retries); neither is ever recorded as the candidate's result.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sandbox.backends import Limits, SandboxInfraError, SandboxRun, get_backend
from sandbox.backends.filesystem import new_scratch
from sandbox.checks.pipeline import static_check
from sandbox.checks.report import CheckReport
from sandbox.vocabulary import STAGE_VERDICTS, Sandbox, Status

CANDIDATE_STAGES = ("trace", "validity", "smoke", "full")
STAGE_SECONDS = {"trace": 180.0, "validity": 120.0, "smoke": 180.0}
FULL_SECONDS = {"smoke": 900.0, "quick": 4 * 3600.0, "paper": 24 * 3600.0}
SCORER_SECONDS = 900.0
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

    def to_dict(self) -> dict:
        return asdict(self)


class _StageWatch:
    """Per-stage time limits, from the stage records the sandboxed stages append. The records are
    written by the untrusted process, so they only ever shorten its time: the backend's
    overall wall-clock limit still holds."""

    def __init__(
        self, stages_file: Path, limits: dict[str, float], claim_signature=None, cancelled=None
    ):
        self.file, self.limits, self.seen = stages_file, limits, {}
        self.cancelled = cancelled or (lambda: False)
        self.expired: str | None = None
        self.claim_signature = claim_signature
        self.signature: str | None = None
        self.duplicate_of: int | None = None

    def check_signature(self) -> bool:
        """Once the validity stage has left the behaviour signature, ask the archive whether an
        earlier candidate behaves the same; if so the run is stopped before training."""
        if self.claim_signature is None or self.signature is not None:
            return False
        try:
            signature = json.loads((self.file.parent / "signature.json").read_text())["signature"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not (isinstance(signature, str) and 0 < len(signature) <= 64 and signature.isalnum()):
            self.signature = ""  # malformed: never deduplicated, never asked again
            return False
        self.signature = signature
        self.duplicate_of = self.claim_signature(signature)
        return self.duplicate_of is not None

    def current(self) -> str | None:
        started, ended = [], set()
        try:
            for line in self.file.read_text(errors="replace").splitlines():
                record = json.loads(line)
                (
                    started.append(record["stage"])
                    if record.get("event") == "start"
                    else ended.add(record.get("stage"))
                )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        running = [s for s in started if s not in ended]
        return running[-1] if running else None

    def __call__(self) -> bool:
        if self.cancelled() or self.check_signature():
            return True
        stage = self.current()
        if stage is None:
            return False
        first_seen = self.seen.setdefault(stage, time.monotonic())
        if time.monotonic() - first_seen > self.limits.get(stage, float("inf")):
            self.expired = stage
            return True
        return False


def _read_stage_records(stages_file: Path) -> list[StageRecord]:
    records = []
    try:
        lines = stages_file.read_text(errors="replace").splitlines()
    except OSError:
        return records
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


def evaluate_candidate(
    task: str,
    source: str,
    budget: str,
    *,
    sandbox: str = Sandbox.AUTO,
    seed: int = 0,
    stage_seconds: dict[str, float] | None = None,
    limits: Limits | None = None,
    claim_signature=None,
    cancelled=None,
    gpu: bool = False,
) -> Evaluation:
    """Run the whole cascade on one candidate source. `claim_signature(signature)` (optional)
    returns the id of an earlier candidate with the same behaviour, or None after recording
    this one's; a duplicate stops before training with status "duplicate". When `cancelled()`
    turns true the sandbox is killed and the status is "cancelled": no verdict at all. A failure
    of the backend itself (SandboxInfraError) is retried from scratch; if it persists the
    status is "infra", with the one-line reason as the last stage: no verdict either."""
    start = time.monotonic()
    static_result = static_check(source)
    if not static_result.passed:
        stage = StageRecord(
            "static", Status.REJECTED, time.monotonic() - start, static_result.detail
        )
        return Evaluation(
            Status.REJECTED,
            None,
            stages=[stage],
            checks=CheckReport([static_result]).to_dict(),
            seconds=time.monotonic() - start,
        )
    static = StageRecord("static", Status.OK, time.monotonic() - start)

    backend = get_backend(sandbox)
    for wait in (*INFRA_RETRY_SECONDS, None):
        try:
            evaluation = _run_in_sandbox(
                backend,
                task,
                source,
                budget,
                seed,
                stage_seconds,
                limits,
                claim_signature,
                cancelled,
                gpu,
            )
            break
        except SandboxInfraError as error:
            if wait is None or (cancelled is not None and cancelled()):
                failure = StageRecord(
                    "sandbox",
                    Status.INFRA,
                    time.monotonic() - start,
                    f"{error} (tried {len(INFRA_RETRY_SECONDS) + 1} times)",
                )
                return Evaluation(
                    Status.INFRA,
                    None,
                    stages=[static, failure],
                    backend=backend.name,
                    seconds=time.monotonic() - start,
                )
            time.sleep(wait)
    if evaluation.status != Status.CANCELLED:  # no verdict: no stages either
        evaluation.stages.insert(0, static)
    evaluation.seconds = time.monotonic() - start
    return evaluation


def _run_in_sandbox(
    backend, task, source, budget, seed, stage_seconds, limits, claim_signature, cancelled, gpu
) -> Evaluation:
    """The sandboxed stages and the scorer, in a fresh scratch directory. SandboxInfraError
    when the backend fails under the candidate."""
    stage_limits = {**STAGE_SECONDS, "full": FULL_SECONDS[budget], **(stage_seconds or {})}
    limits = limits or Limits(wall_seconds=sum(stage_limits.values()) + 60.0)
    scratch = new_scratch()
    try:
        (scratch / "in").mkdir()
        (scratch / "out").mkdir()
        (scratch / "in" / "candidate.py").write_text(source)
        (scratch / "in" / "request.json").write_text(
            json.dumps({"task": task, "budget": budget, "seed": seed})
        )
        watch = _StageWatch(
            scratch / "out" / "stages.jsonl", stage_limits, claim_signature, cancelled
        )
        # The devices a scheduler (Ray, a batch system) gave this process are the sandbox's.
        visible = {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES",) if gpu and k in os.environ}
        outcome = backend.run(
            SandboxRun(
                ("-m", "sandbox.stages", str(scratch / "in" / "request.json")),
                scratch,
                limits,
                env=visible,
                gpu=gpu,
                watchdog=watch,
            )
        )
        if watch.cancelled():
            return Evaluation(Status.CANCELLED, None, backend=backend.name)
        stages = _read_stage_records(scratch / "out" / "stages.jsonl")
        evaluation = Evaluation(
            Status.OK,
            None,
            stages=stages,
            log_tail=outcome.log_tail[-LOG_TAIL_CHARS:],
            backend=backend.name,
            isolation=outcome.isolation,
        )
        evaluation.checks = _read_checks(scratch / "out" / "checks.json")
        watch.check_signature()  # in case the run ended between two watchdog polls
        evaluation.signature = watch.signature or None
        if watch.duplicate_of is not None:
            evaluation.duplicate_of = watch.duplicate_of
            stages.append(
                StageRecord(
                    "signature",
                    Status.DUPLICATE,
                    outcome.seconds,
                    f"behaves like candidate {watch.duplicate_of} on the signature grid",
                )
            )
            evaluation.status = Status.DUPLICATE
            return evaluation
        status = _candidate_status(outcome, stages, watch)
        if status == Status.OK:
            scored = _score(task, budget, scratch / "out")
            stages.append(
                StageRecord(
                    "score", scored["status"], scored.pop("seconds"), scored.get("detail", "")
                )
            )
            status = scored["status"]
            if status == Status.OK:
                evaluation.fitness = scored["fitness"]
                evaluation.meta_test_fitness = scored["meta_test_fitness"]
                evaluation.per_env = scored["per_env"]
        evaluation.status = status
        return evaluation
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _candidate_status(outcome, stages: list[StageRecord], watch: _StageWatch) -> str:
    """How the sandboxed part ended. Signals and limits observed here outrank what the
    untrusted stage records claim."""
    ran = {s.name: s for s in stages}
    if outcome.timed_out:
        stage = watch.expired or watch.current() or "sandbox"
        stages.append(
            StageRecord(stage, Status.TIMEOUT, outcome.seconds, "killed at its time limit")
        )
        return Status.TIMEOUT
    if outcome.output_exceeded:
        stages.append(
            StageRecord(
                "sandbox",
                Status.OUTPUT_LIMIT,
                outcome.seconds,
                "printed more than its output budget",
            )
        )
        return Status.OUTPUT_LIMIT
    if outcome.killed_by_signal is not None:
        sig = outcome.killed_by_signal
        status = {signal.SIGKILL: Status.OOM, signal.SIGXCPU: Status.TIMEOUT}.get(
            sig, Status.FAILED
        )
        stages.append(
            StageRecord(
                watch.current() or "sandbox", status, outcome.seconds, f"killed by signal {sig}"
            )
        )
        return status
    failed = next((s for s in stages if s.status != Status.OK), None)
    if failed is not None:
        return failed.status
    if outcome.exit_code != 0 or any(name not in ran for name in CANDIDATE_STAGES):
        stages.append(
            StageRecord("sandbox", Status.FAILED, outcome.seconds, f"exit code {outcome.exit_code}")
        )
        return Status.FAILED
    return Status.OK


def _read_checks(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and isinstance(data.get("checks"), list) else None
    except (OSError, ValueError):
        return None


def _score(task: str, budget: str, out_dir: Path) -> dict:
    """Run the trusted scorer in its own process and return its verdict."""
    start = time.monotonic()
    request = out_dir.parent / "score_request.json"
    request.write_text(json.dumps({"task": task, "budget": budget, "out_dir": str(out_dir)}))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox.scorer", str(request)],
            capture_output=True,
            text=True,
            timeout=SCORER_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return {
            "status": Status.TIMEOUT,
            "detail": "the scorer timed out",
            "seconds": time.monotonic() - start,
        }
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {
            "status": Status.FAILED,
            "detail": f"scorer error: {done.stderr[-1500:]}",
            "seconds": time.monotonic() - start,
        }
    result["seconds"] = time.monotonic() - start
    return result
