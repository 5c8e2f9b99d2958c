"""A drift's landscape computed in the sandbox (sandbox.stages: load -> landscape) and read
back as untrusted data (sandbox/landscape.py validates the file)."""

import json
import shutil
import stat
from pathlib import Path

from harness.backends import Limits, SandboxRun, get_backend
from harness.backends.filesystem import new_scratch
from sandbox.checks.pipeline import static_check
from sandbox.landscape import LANDSCAPE_FILE, Landscape, LandscapeError, read_landscape
from sandbox.tasks import TaskError, load_task
from sandbox.vocabulary import Sandbox, Stage, Status

LANDSCAPE_SECONDS = 120.0
STAGE_LOG_BYTES = 64 * 1024  # of the stage records read back for an error message


def compute_landscape(
    task: str, source: str, sandbox: str = Sandbox.AUTO, *, seconds: float = LANDSCAPE_SECONDS
) -> Landscape:
    """Run a drift candidate's source in the sandbox on the landscape grid. Raises
    LandscapeError when the task has no drift, the source fails the static checks or the
    run fails; SandboxUnavailable (from the backend) when no sandbox can run."""
    try:
        spec = load_task(task)
    except TaskError as error:
        raise LandscapeError(str(error)) from None
    if not spec.piece.has_landscape:
        raise LandscapeError(
            f"task {task} searches for a {spec.piece.kind}; landscapes are for drift tasks "
            "(mirror_drift)"
        )
    checked = static_check(source)
    if not checked.passed:
        raise LandscapeError(f"rejected by the static checks: {checked.detail}")
    backend = get_backend(sandbox)
    scratch = new_scratch("landscape-")
    try:
        (scratch / "in").mkdir()
        (scratch / "out").mkdir()
        (scratch / "in" / "candidate.py").write_text(source)
        budget = (
            "smoke" if "smoke" in spec.budgets else spec.budgets[0]
        )  # the stages need one; nothing trains
        request = {
            "task": task,
            "budget": budget,
            "seed": 0,
            "stages": [Stage.LOAD, Stage.LANDSCAPE],
        }
        (scratch / "in" / "request.json").write_text(json.dumps(request))
        outcome = backend.run(
            SandboxRun(
                ("-m", "sandbox.stages", str(scratch / "in" / "request.json")),
                scratch,
                Limits(wall_seconds=seconds),
            )
        )
        if outcome.timed_out:
            raise LandscapeError(f"the landscape run was killed at its {seconds:.0f} s limit")
        if outcome.exit_code != 0:
            raise LandscapeError(f"the landscape run failed ({_failure(scratch / 'out', outcome)})")
        return read_landscape(scratch / "out" / LANDSCAPE_FILE)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _failure(out: Path, outcome) -> str:
    """The failing stage's record (untrusted text, shortened), else how the process ended."""
    if outcome.output_exceeded:
        return "it printed more than its output budget"
    try:
        path = out / "stages.jsonl"
        if not stat.S_ISREG(path.lstat().st_mode):
            raise OSError("not a regular file")
        with open(path, "rb") as f:
            lines = f.read(STAGE_LOG_BYTES).decode(errors="replace").splitlines()[:20]
        for line in lines:
            record = json.loads(line)
            if isinstance(record, dict) and record.get("status") not in (None, Status.OK):
                stage, status = str(record.get("stage"))[:20], str(record["status"])[:20]
                return f"stage {stage}: {status}: {str(record.get('detail'))[:500]}"
    except (OSError, ValueError):
        pass
    if outcome.killed_by_signal is not None:
        return f"killed by signal {outcome.killed_by_signal}"
    return f"exit code {outcome.exit_code}: {outcome.log_tail[-500:]}"
