"""PID 1 of a sandbox container: runs the command and forwards at most N bytes of its output.

`python -m sandbox.output_cap N python ARGS...`

Following `docker logs` from the host proved unreliable under load (the stream stalls when the
json-file log rotates), so a flood went unnoticed until the wall-clock limit. Counting inside
the container needs no stream: past N bytes the command's process group is killed, a marker
line is written, and the container ends (as PID 1 exits, the kernel kills whatever is left).
The host reads the logs once, after exit. A candidate that prints the marker itself only
reports its own failure.

Exit status: the command's, or 128 + signal number when a signal ended it (as a shell does).
"""

import os
import signal
import subprocess
import sys

MARKER = b"\n[sandbox] output limit exceeded: killed\n"


def run_capped(limit: int, command: list[str]) -> int:
    child = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    total = 0
    out = sys.stdout.buffer
    while chunk := os.read(child.stdout.fileno(), 65536):
        allowed = chunk[: max(0, limit - total)]
        total += len(chunk)
        out.write(allowed)
        out.flush()
        if total > limit:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
            out.write(MARKER)
            out.flush()
            return 128 + signal.SIGKILL
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(run_capped(int(sys.argv[1]), sys.argv[2:]))
