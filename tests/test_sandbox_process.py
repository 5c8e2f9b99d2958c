"""The process backend itself, probed with code that bypasses the candidate path entirely
(as if the static checks had been defeated): what can a sandboxed program see and do?"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import Limits, SandboxRun
from harness.backends.filesystem import new_scratch
from harness.backends.process import ProcessBackend

PLANTED = "sk-planted-test-key-0123456789"


@pytest.fixture(scope="module")
def backend():
    os.environ["OPENAI_API_KEY"] = PLANTED
    backend = ProcessBackend()
    backend.preflight()
    yield backend
    os.environ.pop("OPENAI_API_KEY", None)


def run(backend, code, **limits):
    scratch = new_scratch()
    try:
        return backend.run(
            SandboxRun(("-c", code), scratch, Limits(**limits) if limits else Limits())
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


PROBE = r"""
import os, socket
print("UID", os.getuid())
print("KEY" if any("sk-planted" in v for v in os.environ.values()) else "NOKEY")
for pid in (os.getppid(), 1):
    try:
        text = open(f"/proc/{pid}/environ", "rb").read()
        print("ENVIRON", pid, b"sk-planted" in text)
    except OSError as e:
        print("ENVIRON-BLOCKED", pid)
for path in (
    "/tmp/escape-canary",
    "/var/tmp/escape-canary",
    "/dev/shm/escape-canary",
    "%(repo)s/escape-canary",
    "/etc/escape-canary",
):
    try:
        open(path, "w").write("x"); print("WROTE", path)
    except OSError:
        print("NOWRITE", path)
try:
    socket.create_connection(("127.0.0.1", 1), timeout=1); print("NET-OPEN")
except OSError as e:
    print("NET", type(e).__name__)
open("inside-scratch", "w").write("ok"); print("SCRATCH-OK")
"""


def test_probe_sees_no_key_cannot_write_outside_scratch_and_has_no_network(backend):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outcome = run(backend, PROBE % {"repo": repo})
    log = outcome.log_tail
    assert outcome.exit_code == 0, log
    assert "NOKEY" in log.splitlines() and "KEY" not in log.splitlines()
    assert not any(
        line.startswith("ENVIRON ") and line.endswith("True") for line in log.splitlines()
    ), log
    # Private tmpfs directories may be written inside; nothing may reach the host.
    assert not any(
        line.startswith("WROTE")
        and (
            "escape-canary" in line
            and not line.split()[1].startswith(("/tmp", "/var/tmp", "/dev/shm"))
        )
        for line in log.splitlines()
    ), log
    assert "SCRATCH-OK" in log
    for canary in (
        "/tmp/escape-canary",
        "/var/tmp/escape-canary",
        "/dev/shm/escape-canary",
        f"{repo}/escape-canary",
    ):
        assert not os.path.exists(canary)
    if os.geteuid() == 0 and backend.bwrap:
        assert "UID 65534" in log and "NET-OPEN" not in log


def test_wall_clock_timeout_kills_the_whole_group(backend):
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)'])\n"
        "while True: pass"
    )
    start = time.monotonic()
    outcome = run(backend, code, wall_seconds=3)
    assert outcome.timed_out and outcome.exit_code == -signal.SIGKILL
    assert time.monotonic() - start < 15


def test_output_budget(backend):
    outcome = run(
        backend, "import sys\nwhile True: sys.stdout.write('x' * 65536)", output_bytes=2_000_000
    )
    assert outcome.output_exceeded and not outcome.timed_out
    assert len(outcome.log_tail) <= 64 * 1024


def test_memory_limit_gives_jax_a_clean_error(backend):
    outcome = run(
        backend,
        "import jax.numpy as jnp\nprint(jnp.ones((40000, 40000)).sum())",
        memory_bytes=2 * 1024**3,
    )
    assert outcome.exit_code == 1 and "RESOURCE_EXHAUSTED" in outcome.log_tail


def test_file_size_limit(backend):
    outcome = run(backend, "open('big', 'wb').write(b'x' * 50_000_000)", file_bytes=1_000_000)
    assert outcome.exit_code != 0


INPUTS_PROBE = r"""
import os
for what, write in [
    ("append", lambda: open("in/member/candidate.py", "a").write("x")),
    ("create", lambda: open("in/new.py", "w").write("x")),
    ("rename", lambda: os.rename("in", "elsewhere")),
    ("out", lambda: open("out/file", "w").write("x")),
]:
    try:
        write()
        print("WROTE", what)
    except OSError:
        print("REFUSED", what)
"""


def test_the_inputs_are_read_only(backend):
    """What a run names read-only in its scratch (the members' sources) it can read and not
    change, rename or add to; the rest of the scratch stays writable."""
    scratch = new_scratch()
    try:
        (scratch / "in" / "member").mkdir(parents=True)
        (scratch / "in" / "member" / "candidate.py").write_text("source")
        (scratch / "out").mkdir()
        outcome = backend.run(
            SandboxRun(("-c", INPUTS_PROBE), scratch, read_only=(scratch / "in",))
        )
        lines = outcome.log_tail.splitlines()
        assert outcome.exit_code == 0, outcome.log_tail
        if backend.bwrap:
            assert [line for line in lines if line.startswith("WROTE")] == ["WROTE out"], lines
        assert (scratch / "in" / "member" / "candidate.py").read_text() == "source"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_checkout_in_a_private_temporary_directory_is_mounted_traversably(tmp_path):
    """A checkout in a 0700 directory under /tmp (mktemp -d) must be reachable by the sandbox
    user in every process: the mount plan once depended on set order, which varies with
    the hash seed, and failed at random."""
    private = tmp_path / "private"
    (private / "repo").mkdir(parents=True)
    private.chmod(0o700)
    script = (
        "from pathlib import Path; from harness.backends.process import _filesystem_args; "
        f"print(_filesystem_args([(Path('{private}/repo'), Path('/usr'), False), "
        f"(Path('{tmp_path}/scratch'), Path('{tmp_path}/scratch'), True)]))"
    )
    for seed in range(6):
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        below_tmp = [d for d in (private / "repo").parents if Path("/tmp") in d.parents]
        for directory in below_tmp:  # every directory between the private /tmp and the checkout
            assert f"'--perms', '0755', '--dir', '{directory}'" in out, (seed, directory, out)
