"""Sandbox backends: one interface (`base.Backend`), chosen by name; `auto` picks the strongest
that passes its preflight here."""

import importlib
import logging
import threading

from harness.backends.base import (
    Backend,
    Limits,
    SandboxInfraError,
    SandboxOutcome,
    SandboxRun,
    SandboxUnavailable,
)
from sandbox.vocabulary import Sandbox

__all__ = [
    "Backend",
    "Limits",
    "SandboxInfraError",
    "SandboxOutcome",
    "SandboxRun",
    "SandboxUnavailable",
    "get_backend",
]

AUTO_ORDER = (Sandbox.DOCKER, Sandbox.PROCESS)  # strongest isolation first

log = logging.getLogger(__name__)
_ready: dict[str, Backend] = {}
_lock = (
    threading.Lock()
)  # evaluator threads ask at once; one preflight (and one Docker sweep) per process


# name -> (module, class), imported on first use: Docker's client is not needed otherwise
BACKENDS = {
    Sandbox.DOCKER: ("harness.backends.docker", "DockerBackend"),
    Sandbox.PROCESS: ("harness.backends.process", "ProcessBackend"),
}


def sandbox_names() -> tuple[str, ...]:
    return (Sandbox.AUTO, *BACKENDS)


def check_sandbox(name: str) -> str:
    if name not in sandbox_names():
        raise ValueError(f"unknown sandbox {name!r}; choose {', '.join(sandbox_names())}")
    return name


def _make(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(
            f"no sandbox backend is registered as {name!r}; known: {', '.join(BACKENDS)}"
        )
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)()


def get_backend(name: str = Sandbox.AUTO) -> Backend:
    """One preflighted backend per name and process. `auto` commits to a backend only after
    its import probe has run there: one that fails falls back to the next with a one-line
    note of why; SandboxUnavailable, one line naming each reason, when none works."""
    check_sandbox(name)
    with _lock:
        if name in _ready:
            return _ready[name]
        reasons = []
        for choice in AUTO_ORDER if name == Sandbox.AUTO else (name,):
            try:
                backend = _make(choice)
                backend.preflight()
            except SandboxUnavailable as error:
                reasons.append(f"{choice}: {error}")
                continue
            if reasons:
                log.warning("note: sandbox %s; using %s", reasons[-1], choice)
            _ready[name] = backend
            return backend
        if name == Sandbox.AUTO:
            raise SandboxUnavailable("no sandbox backend works here (" + "; ".join(reasons) + ")")
        raise SandboxUnavailable(reasons[0])
