"""`scientist check`, the part that runs the candidate: inside the sandbox only.

    python -m sandbox.checks.run_check in/request.json

Request: {"task": name, "filename": the name the user gave the file (for messages)}. Runs
the validity pipeline (sandbox/checks/pipeline.py check_candidate: load, contract, the
task's conditions at every budget's call lengths) on in/candidate.py and writes its report
to out/checks.json, valid or not. The trusted side reads that file as untrusted data
(harness/check.py).
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import sys

from sandbox.checks.pipeline import check_candidate
from sandbox.oneshot import inputs, write_result
from sandbox.tasks import load_task

RESULT_FILE = "checks.json"


def main(request_path: str) -> int:
    request, source, out = inputs(request_path)
    task = load_task(request["task"])
    report = check_candidate(task, source, filename=str(request["filename"]))
    write_result(out, RESULT_FILE, report.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
