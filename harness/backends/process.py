"""The embedded default backend: a child process with the strongest isolation this host offers.

With bubblewrap (Debian package `bubblewrap`) the command sees a read-only root filesystem,
private /tmp, /var/tmp and /dev/shm, a minimal /dev, its scratch directory (less its
read-only inputs, `SandboxRun.read_only`) as the only writable place, no network, and its
own PID, IPC and UTS namespaces; directories it has no
business reading and cannot traverse anyway (such as a 0700 /root) are masked, and only
the interpreter and this repository are bound back read-only. Run as root, it drops to
uid/gid 65534 with no capabilities and no-new-privs. Without bubblewrap it falls back to
`unshare --net` (root only) or to no namespace isolation at all; `SandboxOutcome.isolation`
always says which protections were in force.

Everywhere: a new session, a clean allowlisted environment (no API keys), rlimits (set by
util-linux's prlimit) on data memory (JAX survives it, unlike RLIMIT_AS), CPU time, file
size, open files and processes,
a byte budget on stdout+stderr, and a wall-clock timeout that kills the whole group.

What it does not protect against: kernel exploits, CPU and memory-bandwidth contention
with the host, reading world-readable files on the host (e.g. /etc), and, without
bubblewrap, writes to world-writable directories and network access when not root.
"""

import collections
import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.backends.base import (
    BASE_ENV,
    SandboxOutcome,
    SandboxRun,
    SandboxUnavailable,
    one_line,
    platform_env,
)
from harness.backends.filesystem import SANDBOX_UID, hand_over_scratch, new_scratch, sandbox_mounts
from sandbox.vocabulary import Sandbox

TAIL_BYTES = 64 * 1024
PRIVATE_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")


def _traversable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o001)


def _filesystem_args(mounts: list[tuple[Path, Path, bool]]) -> list[str]:
    """bwrap mounts: the host root read-only; untraversable ancestors of needed paths (e.g. a
    0700 /root) and the usual temporary directories replaced by empty tmpfs; then the needed
    paths ((path inside, host path, writable), parents first) bound back, wherever they live,
    through world-traversable directories."""
    covered = {Path(p) for p in PRIVATE_TMPFS}
    for path, _, _ in mounts:
        blocked = next(
            (a for a in reversed(path.parents) if a != Path("/") and not _traversable_by_others(a)),
            None,
        )
        if blocked is not None:
            covered.add(blocked)
    args = ["--ro-bind", "/", "/"]
    # Only the outermost covered directories get a tmpfs; one inside another is hidden by it.
    mounted = [
        m
        for m in sorted(covered, key=lambda p: len(p.parts))
        if not any(other in m.parents for other in covered)
    ]
    for mount in mounted:
        mode = "1777" if str(mount) in PRIVATE_TMPFS else "0755"
        args += ["--perms", mode, "--tmpfs", str(mount)]
    args += ["--dev", "/dev", "--proc", "/proc"]
    made, bound = set(), set()
    for path, source, writable in mounts:
        # The tmpfs the path lies in, whose missing directories must be made traversable. Not
        # any covered ancestor: a set's order varies between processes, and a covered but
        # unmounted one (a 0700 mktemp dir under /tmp) left the checkout unreadable at random.
        # Directories at or inside an earlier mount are that mount's own (the snapshot's).
        tmpfs = next((m for m in mounted if m in path.parents), None)
        if tmpfs is not None:
            for directory in reversed(path.parents):
                inside_mount = directory in bound or any(b in directory.parents for b in bound)
                if tmpfs in directory.parents and directory not in made and not inside_mount:
                    args += ["--perms", "0755", "--dir", str(directory)]
                    made.add(directory)
        args += ["--bind" if writable else "--ro-bind", str(source), str(path)]
        bound.add(path)
    return args


class ProcessBackend:
    name = Sandbox.PROCESS

    def __init__(self, python: str = sys.executable):
        self.python = python
        self.bwrap = shutil.which("bwrap")
        self.setpriv = shutil.which("setpriv")
        self.unshare = shutil.which("unshare")
        self.prlimit = shutil.which("prlimit")
        self.as_root = os.geteuid() == 0
        self.drop_uid = self.as_root and self.setpriv is not None
        # bwrap shows each run the host read-only with a private /tmp; without it, every run
        # as the sandbox user could write whatever another one was given.
        self.isolates_files = self.bwrap is not None

    # -- command assembly ---------------------------------------------------------------
    def _wrap(self, run: SandboxRun) -> tuple[list[str], tuple[str, ...]]:
        env = {
            **BASE_ENV,
            "HOME": str(run.scratch),
            "TMPDIR": "/tmp",
            **platform_env(run.gpu),
            **run.env,
        }
        python = [self.python, *run.args]
        drop = []
        if self.drop_uid:
            drop = [
                self.setpriv,
                f"--reuid={SANDBOX_UID}",
                f"--regid={SANDBOX_UID}",
                "--clear-groups",
                "--no-new-privs",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        if self.bwrap:
            command = [
                self.bwrap,
                "--die-with-parent",
                "--new-session",
                "--unshare-net",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup-try",
                *_filesystem_args(
                    sandbox_mounts(run.scratch, cache=run.cache, read_only=run.read_only)
                ),
                *_gpu_devices(run),
                "--chdir",
                str(run.scratch),
                "--clearenv",
                *[arg for k, v in env.items() for arg in ("--setenv", k, v)],
                "--",
                *drop,
                *python,
            ]
            isolation = (
                "bubblewrap: read-only root, private /tmp, no network, pid/ipc/uts namespaces",
            )
            if drop:
                isolation += (f"uid {SANDBOX_UID}, no capabilities, no-new-privs",)
            return command, isolation + ("clean environment", "rlimits", "new session")
        if self.as_root and self.unshare:
            return (
                [self.unshare, "--net", "--pid", "--fork", "--kill-child", "--", *drop, *python],
                (
                    "unshare: no network, pid namespace",
                    *(("uid 65534",) if drop else ()),
                    "clean environment",
                    "rlimits",
                    "new session",
                ),
            )
        return python, ("clean environment", "rlimits", "new session")

    def _environment(self, run: SandboxRun) -> dict[str, str]:
        if self.bwrap:
            return {}  # bwrap sets the inner environment itself; start it clean (see --clearenv)
        return {
            **BASE_ENV,
            "HOME": str(run.scratch),
            "TMPDIR": str(run.scratch),
            **platform_env(run.gpu),
            **run.env,
        }

    # -- running ----------------------------------------------------------------------------
    def run(self, run: SandboxRun) -> SandboxOutcome:
        if run.cache is not None and not self.isolates_files:
            raise ValueError("a writable cache needs a backend that isolates files (bwrap)")
        if self.drop_uid:
            hand_over_scratch(run.scratch, to_sandbox_uid=True, read_only=run.read_only)
            if run.cache is not None:
                hand_over_scratch(run.cache, to_sandbox_uid=True)
        elif run.cache is not None:
            hand_over_scratch(run.cache, to_sandbox_uid=False)
        command, isolation = self._wrap(run)
        limits = run.limits

        # rlimits through util-linux's prlimit: a preexec_fn would run Python in a forked child
        # of this multithreaded (JAX) process, which can deadlock.
        rlimits = [
            f"--data={limits.memory_bytes}",
            f"--cpu={limits.cpu_seconds}",
            f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}",
            f"--nproc={limits.processes}",
            "--core=0",
        ]
        if self.prlimit is None:
            raise SandboxUnavailable(
                "prlimit (util-linux) is needed to set the sandbox's resource limits"
            )
        command = [self.prlimit, *rlimits, "--", *command]
        start = time.monotonic()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=run.scratch,
            env=self._environment(run),
            start_new_session=True,
        )
        tail, exceeded = collections.deque(), threading.Event()

        def drain():
            total, kept = 0, 0
            while chunk := process.stdout.read1(65536):
                total += len(chunk)
                tail.append(chunk)
                kept += len(chunk)
                while kept - len(tail[0]) >= TAIL_BYTES:
                    kept -= len(tail.popleft())
                if total > limits.output_bytes and not exceeded.is_set():
                    exceeded.set()
                    _kill_group(process)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        timed_out = wait_or_kill(process, run, start, lambda: _kill_group(process))
        reader.join(timeout=10)
        seconds = time.monotonic() - start
        log = b"".join(tail)[-TAIL_BYTES:].decode("utf-8", errors="replace")
        return SandboxOutcome(
            process.returncode, timed_out, exceeded.is_set(), seconds, log, isolation
        )

    def preflight(self) -> None:
        """Check that the sandboxed interpreter imports JAX. Without bubblewrap to re-expose
        it, an interpreter under a 0700 home is unreadable to uid 65534: then keep the uid."""
        try:
            require_imports(self, f"the sandboxed interpreter {self.python}")
        except SandboxUnavailable:
            if not (self.drop_uid and not self.bwrap):
                raise
            self.drop_uid = False
            require_imports(self, f"the sandboxed interpreter {self.python}")


def _gpu_devices(run: SandboxRun) -> list[str]:
    """bwrap's minimal /dev has no GPU: bind NVIDIA's device nodes back when one is asked for."""
    if not run.gpu:
        return []
    nodes = sorted(glob.glob("/dev/nvidia*")) + sorted(glob.glob("/dev/dri/*"))
    return [arg for node in nodes if not os.path.isdir(node) for arg in ("--dev-bind", node, node)]


def require_imports(backend, what: str) -> None:
    """Raise SandboxUnavailable, with a one-line reason, unless a command run by `backend` can
    import jax and sandbox."""
    scratch = new_scratch("preflight-")
    try:
        outcome = backend.run(
            SandboxRun(("-c", "import jax, sandbox.training.ppo; print('imports ok')"), scratch)
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if outcome.exit_code != 0 or "imports ok" not in outcome.log_tail:
        last = next(
            (line for line in reversed(outcome.log_tail.splitlines()) if line.strip()), "no output"
        )
        raise SandboxUnavailable(
            f"{what} cannot import jax and sandbox (exit code {outcome.exit_code}): "
            f"{one_line(last)}",
            log=outcome.log_tail,
        )


def wait_or_kill(process, run: SandboxRun, start: float, kill) -> bool:
    """Wait for `process`; kill it past the wall-clock limit or when the watchdog says so.
    Returns whether it was killed for time."""
    while True:
        try:
            process.wait(timeout=0.5)
            return False
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - start > run.limits.wall_seconds or (
            run.watchdog is not None and run.watchdog()
        ):
            kill()
            process.wait()
            return True


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the child leads its own session and group
    except ProcessLookupError:
        pass
