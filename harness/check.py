"""`scientist check` on the trusted side: the static checks here (pure syntax, nothing
runs), everything that runs the candidate in the sandbox under a time limit
(sandbox/checks/run_check.py), and its report read back as untrusted data.

What the trusted side settles itself: the static verdict (its own record replaces the
sandbox's), the report's shape (exactly the fields and types the pipeline writes, names
unique, the pipeline's order: static, then load), and the verdict and assurance label,
re-derived from the per-check records; a report whose own `valid` or `assurance` disagrees
with them is malformed, never believed. What remains the sandbox's word: each record's
`passed`, detail, counterexample and proof. Candidate code runs in the process that writes
them, so a candidate that escaped its restricted builtins could forge them; nothing on this
side runs or trains because of them (evaluation checks again in its own sandbox, and the
runtime monitor watches training).
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from harness.backends import Limits
from harness.oneshot import run_in_sandbox
from sandbox.checks.pipeline import static_check
from sandbox.checks.report import CheckReport, CheckResult
from sandbox.checks.run_check import RESULT_FILE
from sandbox.vocabulary import Proof, Sandbox, Stage, Status

CHECK_SECONDS = 300.0  # a baseline takes about 15 s on two busy cores, sandbox start included
MAX_CHECKS = 64
MAX_DETAIL_CHARS = 10_000
CHECK_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
CHECK_KEYS = frozenset({"name", "passed", "detail", "counterexample", "proof"})
PROOF_KEYS = frozenset({"condition", "verdict", "detail", "boxes", "seconds", "counterexample"})


class MalformedReport(ValueError):
    """The sandbox's checks.json is not a report the pipeline writes."""


@dataclass(frozen=True)
class SandboxedCheck:
    report: CheckReport
    status: Status  # OK, REJECTED (static), INVALID, TIMEOUT or FAILED (no usable report)
    headline: str | None = None  # for TIMEOUT and FAILED: the verdict in one line
    backend: str = ""


def check_in_sandbox(
    task: str,
    source: str,
    *,
    filename: str = "candidate.py",
    sandbox: str = Sandbox.AUTO,
    seconds: float = CHECK_SECONDS,
) -> SandboxedCheck:
    """The validity report of `source` for `task` (a name load_task accepts), its candidate
    code run only in the sandbox. SandboxUnavailable when no sandbox can run it."""
    static = static_check(source)
    if not static.passed:
        return SandboxedCheck(CheckReport([static]), Status.REJECTED)
    shot = run_in_sandbox(
        "sandbox.checks.run_check",
        source,
        {"task": task, "filename": filename},
        RESULT_FILE,
        sandbox=sandbox,
        limits=Limits(wall_seconds=seconds),
    )
    if shot.timed_out:
        detail = (
            f"the check did not finish in {seconds:g} s: killed at its time limit "
            "(an endless loop when loaded or called?)"
        )
        return _no_report(static, "time_limit", detail, Status.TIMEOUT, "rejected", shot.backend)
    if shot.failure is not None:
        detail = f"the sandboxed check failed: {shot.failure}"
        return _no_report(static, Stage.SANDBOX, detail, Status.FAILED, "failed", shot.backend)
    try:
        report = parse_report(shot.data, static)
    except MalformedReport as error:
        detail = f"the sandbox's report is malformed: {error}"
        return _no_report(static, Stage.SANDBOX, detail, Status.FAILED, "failed", shot.backend)
    return SandboxedCheck(
        report, Status.OK if report.valid else Status.INVALID, backend=shot.backend
    )


def _no_report(static, name, detail, status, verdict, backend) -> SandboxedCheck:
    report = CheckReport([static, CheckResult(name, False, detail)])
    return SandboxedCheck(report, status, f"{verdict}: {detail}", backend)


def parse_report(data: bytes, static: CheckResult) -> CheckReport:
    """The report in a sandbox's checks.json, with the trusted side's own static record;
    MalformedReport unless it is exactly what the pipeline writes."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise MalformedReport(f"not JSON ({type(error).__name__})") from None
    if not isinstance(raw, dict) or set(raw) != {"valid", "assurance", "checks"}:
        raise MalformedReport("not an object of valid, assurance and checks")
    records = raw["checks"]
    if not isinstance(records, list) or not 2 <= len(records) <= MAX_CHECKS:
        raise MalformedReport(f"checks is not a list of 2 to {MAX_CHECKS} records")
    results = [_result(record, index) for index, record in enumerate(records)]
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise MalformedReport("a check is named twice")
    if names[:2] != [Stage.STATIC, Stage.LOAD] or not results[0].passed:
        raise MalformedReport("it does not start with a passed static check and a load")
    report = CheckReport([static, *results[1:]])
    if raw["valid"] is not report.valid or raw["assurance"] != report.assurance:
        raise MalformedReport("its verdict does not follow from its checks")
    return report


def _result(record: Any, index: int) -> CheckResult:
    where = f"check {index}"
    if not isinstance(record, dict) or set(record) != CHECK_KEYS:
        raise MalformedReport(f"{where} is not a record of {', '.join(sorted(CHECK_KEYS))}")
    name, passed, detail = record["name"], record["passed"], record["detail"]
    if not isinstance(name, str) or not CHECK_NAME.fullmatch(name):
        raise MalformedReport(f"{where} has no valid name")
    if not isinstance(passed, bool):
        raise MalformedReport(f"{name}: passed is not true or false")
    if not isinstance(detail, str) or len(detail) > MAX_DETAIL_CHARS:
        raise MalformedReport(f"{name}: detail is not a string of at most {MAX_DETAIL_CHARS}")
    counterexample = record["counterexample"]
    if counterexample is not None and not _plain_mapping(counterexample):
        raise MalformedReport(f"{name}: counterexample is not an object")
    return CheckResult(name, passed, detail, counterexample, _proof(record["proof"], name))


def _proof(proof: Any, name: str) -> dict | None:
    if proof is None:
        return None
    if not _plain_mapping(proof) or not {"verdict", "detail", "boxes"} <= set(proof) <= PROOF_KEYS:
        raise MalformedReport(f"{name}: proof is not a certificate's record")
    boxes = proof["boxes"]
    if (
        proof["verdict"] not in tuple(Proof)
        or not isinstance(proof["detail"], str)
        or len(proof["detail"]) > MAX_DETAIL_CHARS
        or not isinstance(boxes, int)
        or isinstance(boxes, bool)
        or boxes < 0
    ):
        raise MalformedReport(f"{name}: proof has no verdict, detail or box count")
    counterexample = proof.get("counterexample")
    if counterexample is not None and not _plain_mapping(counterexample):
        raise MalformedReport(f"{name}: the proof's counterexample is not an object")
    return proof


def _plain_mapping(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)
