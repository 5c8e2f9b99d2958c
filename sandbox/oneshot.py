"""Inside a one-shot sandboxed run (`scientist check`, `scientist train --candidate`; the
trusted side is harness/oneshot.py): the module run calls `inputs()` first and
`write_result()` last; candidate code runs between the two, in that process, so whatever it
writes is the candidate's word.
"""

import json
import os
import sys
from pathlib import Path

SOURCE_FILE = "candidate.py"
REQUEST_FILE = "request.json"
MAX_RESULT_BYTES = 4 * 1024**2  # a check report or a training summary: kB when honest


def inputs(request_path: str) -> tuple[dict, str, Path]:
    """The request, the candidate's source and the out directory, read before any candidate
    code runs. `-m` put the working directory (the writable scratch) first on sys.path: no
    module file left there may be what a later, lazy import of this process loads."""
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    request_file = Path(request_path)
    request = json.loads(request_file.read_text())
    source = (request_file.parent / SOURCE_FILE).read_text()
    return request, source, request_file.parent.parent / "out"


def write_result(out: Path, name: str, data: dict) -> None:
    """Write the result whole or not at all: a half-written file is no result."""
    temporary = out / f".{name}.partial"
    temporary.write_text(json.dumps(data))
    os.replace(temporary, out / name)
