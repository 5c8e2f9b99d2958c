"""What every sandbox backend takes and returns.

A backend runs one Python command (`python -m sandbox.stages ...` in production, any module
or `-c` code in tests) with a scratch directory as its only writable place, under limits,
and reports how it ended. It never interprets the command's output: results travel only as
files in the scratch directory's `out/`, read later by the trusted scorer.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

GIB = 1024**3


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 300.0
    memory_bytes: int = 6 * GIB  # address-space data limit (JAX fails cleanly under it)
    cpu_seconds: int = 3600
    file_bytes: int = 256 * 1024**2  # largest single file the sandbox may write
    open_files: int = 256
    processes: int = 1024  # JAX's thread pools count as processes for this limit
    output_bytes: int = 4 * 1024**2  # stdout + stderr together


@dataclass(frozen=True)
class SandboxRun:
    args: tuple[str, ...]  # arguments after `python`, e.g. ("-m", "sandbox.stages", "request.json")
    scratch: Path  # the run's only writable directory; holds in/ (read by the command) and out/
    limits: Limits = field(default_factory=Limits)
    env: dict[str, str] = field(default_factory=dict)  # extra allowlisted variables
    gpu: bool = False
    # A persistent directory the run may write besides its scratch (a compilation cache),
    # mounted at its own path. Only for runs that execute no candidate code, and only on a
    # backend that `isolates_files`: no other run can write it.
    cache: Path | None = None
    # Directories inside the scratch the command reads but may not write (its inputs):
    # mounted read-only over the scratch, and left the trusted user's.
    read_only: tuple[Path, ...] = ()
    # Polled about twice a second while the command runs; returning True kills it as timed out
    # (the cascade uses it for per-stage time limits).
    watchdog: Callable[[], bool] | None = None


@dataclass(frozen=True)
class SandboxOutcome:
    exit_code: int | None  # None when killed
    timed_out: bool
    output_exceeded: bool
    seconds: float
    log_tail: str  # last part of stdout + stderr, decoded leniently
    isolation: tuple[str, ...]  # the protections that were in force

    @property
    def killed_by_signal(self) -> int | None:
        return -self.exit_code if self.exit_code is not None and self.exit_code < 0 else None


class SandboxUnavailable(RuntimeError):
    """The backend cannot run here (no engine, no image, interpreter unusable...). The
    message is one line; `log` keeps the sandboxed command's output, if there was one."""

    def __init__(self, message: str, *, log: str = ""):
        super().__init__(message)
        self.log = log


class SandboxInfraError(SandboxUnavailable):
    """The backend failed while running a command (an engine API or container runtime
    error): the sandbox's fault, not the command's, so no verdict on what it ran."""


def one_line(text, limit: int = 400) -> str:
    """A message fit for one console line and one archive field: whitespace collapsed, and a
    long one cut in the middle, since errors put the cause at the end (an OCI runtime error
    names the failing mount last)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + " … " + text[len(text) - (limit - head - 3) :]


class Backend(Protocol):
    name: str
    # Other runs cannot write what this run sees beyond its scratch (a private mount
    # namespace): a writable cache (SandboxRun.cache) is safe to give it.
    isolates_files: bool

    def run(self, run: SandboxRun) -> SandboxOutcome: ...

    def preflight(self) -> None:
        """Raise SandboxUnavailable unless the sandboxed interpreter can import JAX."""


# Variables a sandboxed command may see. Everything else, API keys included, stays outside.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "PYTHONUNBUFFERED": "1",
    "XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=false",
}


def platform_env(gpu: bool) -> dict[str, str]:
    """JAX on CPU unless a GPU was asked for. On a GPU, JAX allocates as it goes instead of
    taking 75 % of the device at start: several sandboxes (`--workers`) and the scorer share
    one device."""
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if gpu else {"JAX_PLATFORMS": "cpu"}
