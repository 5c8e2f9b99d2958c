"""Sandbox backends: one interface (`base.Backend`), chosen by name; `auto` picks the strongest."""

import functools

from sandbox.backends.base import Backend, Limits, SandboxOutcome, SandboxRun, SandboxUnavailable

__all__ = ["Backend", "Limits", "SandboxOutcome", "SandboxRun", "SandboxUnavailable", "get_backend"]


@functools.cache
def get_backend(name: str = "auto") -> Backend:
    """One preflighted backend per name and process; `auto` prefers Docker, then process."""
    from sandbox.backends.docker import DockerBackend
    from sandbox.backends.process import ProcessBackend

    if name not in ("auto", "process", "docker"):
        raise ValueError(f"unknown sandbox {name!r}; choose auto, process or docker")
    if name in ("auto", "docker"):
        try:
            backend = DockerBackend()
            backend.preflight()
            return backend
        except SandboxUnavailable:
            if name == "docker":
                raise
    backend = ProcessBackend()
    backend.preflight()
    return backend
