"""One sandboxed run of one candidate outside the evaluation cascade (`scientist check`,
`scientist train --candidate`): its source and a request in in/ (read-only inside where the
backend allows), a module of the sandbox package run on them (it reads them with
`sandbox.oneshot.inputs`), and the one file it leaves in out/ read back as untrusted bytes
(harness/outputs.py: no links followed, only a regular file, size-capped). The caller parses
those bytes itself and trusts nothing in them.
"""

import json
import shutil
from dataclasses import dataclass

from harness.backends import Limits, SandboxOutcome, SandboxRun, get_backend
from harness.backends.base import one_line
from harness.backends.filesystem import new_scratch
from harness.outputs import OutputError, Outputs
from sandbox.oneshot import MAX_RESULT_BYTES, REQUEST_FILE, SOURCE_FILE
from sandbox.vocabulary import Sandbox


@dataclass(frozen=True)
class OneShot:
    """How the run ended, and its result file's bytes when it ended cleanly (exit code 0)
    and left one; otherwise `failure` says why not, in one line."""

    outcome: SandboxOutcome
    data: bytes | None
    failure: str | None
    backend: str

    @property
    def timed_out(self) -> bool:
        return self.outcome.timed_out


def run_in_sandbox(
    module: str,
    source: str,
    request: dict,
    result: str,
    *,
    sandbox: str = Sandbox.AUTO,
    limits: Limits,
    gpu: bool = False,
) -> OneShot:
    """Run `python -m module in/request.json` in the sandbox on `source`, and read back
    out/`result`. SandboxUnavailable (from the backend) when no sandbox can run; never a
    fallback to this process."""
    backend = get_backend(sandbox)
    scratch = new_scratch("oneshot-")
    try:
        inputs, out = scratch / "in", scratch / "out"
        inputs.mkdir()
        out.mkdir()
        (inputs / SOURCE_FILE).write_text(source)
        (inputs / REQUEST_FILE).write_text(json.dumps(request))
        outcome = backend.run(
            SandboxRun(
                ("-m", module, str(inputs / REQUEST_FILE)),
                scratch,
                limits,
                gpu=gpu,
                read_only=(inputs,),
            )
        )
        failure = _failure(outcome, limits)
        data = None
        if failure is None:
            try:
                data = Outputs(scratch, out).read(result, MAX_RESULT_BYTES)
            except OutputError as error:
                failure = str(error)
            if data is None and failure is None:
                failure = f"it ended without writing {result}"
        return OneShot(outcome, data, failure, backend.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _failure(outcome: SandboxOutcome, limits: Limits) -> str | None:
    """Why a run has no result to read, or None when it exited cleanly."""
    if outcome.timed_out:
        return f"killed at its {limits.wall_seconds:.0f} s time limit"
    if outcome.output_exceeded:
        return "it printed more than its output budget"
    if outcome.killed_by_signal is not None:
        return f"killed by signal {outcome.killed_by_signal} (out of memory or CPU time?)"
    if outcome.exit_code != 0:
        last = next((x for x in reversed(outcome.log_tail.splitlines()) if x.strip()), "")
        return f"exit code {outcome.exit_code}: {one_line(last, 300)}"
    return None
