"""The hardened Docker backend: one container per evaluation.

No network, read-only root with a sized tmpfs /tmp, all capabilities dropped,
no-new-privileges, uid/gid 65534, pids/memory/CPU/file-size/open-file limits, the scratch
directory (less its read-only inputs) as the only writable mount, an allowlisted
environment (no API keys), GPUs by device request (one per evaluation) when asked, a hard
wall-clock timeout with kill and removal, and leftover containers (by label) swept when
the backend starts.

Images: `SCIENTIST_SANDBOX_IMAGE` names one built from sandbox/Dockerfile (CUDA 12) or
sandbox/Dockerfile.cpu (`docker compose --profile build build sandbox-cpu`), which contains the
interpreter and this repository. Without it the backend imports a tiny root filesystem as
`rl-scientist-sandbox:host` and mounts the host's /usr, the interpreter and the repository
read-only, which needs no registry.
"""

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from harness.backends.base import (
    BASE_ENV,
    SandboxInfraError,
    SandboxOutcome,
    SandboxRun,
    SandboxUnavailable,
    one_line,
    platform_env,
)
from harness.backends.filesystem import SANDBOX_UID, hand_over_scratch, sandbox_mounts
from harness.backends.process import TAIL_BYTES, require_imports, wait_or_kill
from sandbox.output_cap import MARKER
from sandbox.vocabulary import Sandbox

log = logging.getLogger(__name__)

LABEL = "rl-scientist.sandbox"
HOST_IMAGE = "rl-scientist-sandbox:host"
TMPFS_BYTES = 512 * 1024**2


def _host_rootfs_tar() -> bytes:
    """A root filesystem with nothing in it but mount points, merged-/usr symlinks, an
    unprivileged user and the dynamic loader's configuration: /usr comes from the host."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_dir(name, mode=0o755):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name, data: bytes, mode=0o644):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for directory in (
            "usr",
            "etc",
            "root",
            "proc",
            "dev",
            "sys",
            "run",
            "var",
            "home",
            "opt",
            "work",
        ):
            add_dir(directory)
        add_dir("tmp", 0o1777)
        for link in ("bin", "sbin", "lib", "lib64"):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, f"usr/{link}"
            tar.addfile(info)
        add_file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        for name in ("ld.so.cache", "ld.so.conf"):
            path = Path("/etc") / name
            if path.is_file():
                add_file(f"etc/{name}", path.read_bytes())
        conf_d = Path("/etc/ld.so.conf.d")
        if conf_d.is_dir():
            add_dir("etc/ld.so.conf.d")
            for path in conf_d.glob("*.conf"):
                add_file(f"etc/ld.so.conf.d/{path.name}", path.read_bytes())
    return buffer.getvalue()


class DockerBackend:
    name = Sandbox.DOCKER
    isolates_files = True  # a container sees only what is mounted into it

    def __init__(self, image: str | None = None):
        try:
            import requests

            import docker
        except ImportError:
            raise SandboxUnavailable("the docker Python package is not installed") from None
        try:
            self.client = docker.from_env(timeout=60)
            self.client.ping()
        except Exception as error:
            raise SandboxUnavailable(f"no Docker engine reachable: {one_line(error)}") from None
        self.docker = docker
        # What the engine or its connection can raise: every one is an infrastructure failure.
        self.engine_errors = (docker.errors.DockerException, requests.exceptions.RequestException)
        self.image = image or os.environ.get("SCIENTIST_SANDBOX_IMAGE", HOST_IMAGE)
        self.host_mode = self.image == HOST_IMAGE
        self.as_root = os.geteuid() == 0
        self.sweep()

    def sweep(self) -> int:
        """Remove containers that a killed process on this host left behind. Each container
        is labelled with the host and pid that started it, so the running evaluations of
        another runner (or of `scientist web`) sharing the engine are left alone. Containers
        already going away (another sweep got there first) and engine errors are not fatal:
        a leftover is only a leftover."""
        try:
            leftovers = [
                c
                # ignore_removed: a container removed between the listing and its inspection
                # (another sweep, or an evaluation ending) is simply not a leftover.
                for c in self.client.containers.list(
                    all=True, filters={"label": LABEL}, ignore_removed=True
                )
                if _orphaned(c.labels.get(LABEL, ""))
            ]
        except self.engine_errors as error:
            log.warning("note: could not list leftover sandbox containers: %s", _reason(error))
            return 0
        return sum(self._remove(container) for container in leftovers)

    def _remove(self, container) -> bool:
        """Force-remove a container; False if it was gone or going already, or the engine
        refused (with a note)."""
        try:
            container.remove(force=True)
            return True
        except self.docker.errors.NotFound:
            return False
        except self.docker.errors.APIError as error:
            if error.status_code != 409:  # 409: its removal is already in progress
                log.warning(
                    "note: could not remove sandbox container %s: %s",
                    container.short_id,
                    _reason(error),
                )
            return False
        except self.engine_errors as error:
            log.warning(
                "note: could not remove sandbox container %s: %s",
                container.short_id,
                _reason(error),
            )
            return False

    def _ensure_image(self) -> None:
        try:
            self.client.images.get(self.image)
            return
        except self.docker.errors.ImageNotFound:
            if not self.host_mode:
                raise SandboxUnavailable(
                    f"sandbox image {self.image} not found; build it with "
                    "`docker compose --profile build build sandbox-cpu` (or `sandbox` for CUDA)"
                ) from None
        self.client.api.import_image_from_data(
            _host_rootfs_tar(), repository=HOST_IMAGE.split(":")[0], tag=HOST_IMAGE.split(":")[1]
        )

    def _mounts(self, run: SandboxRun) -> list:
        Mount = self.docker.types.Mount
        if not self.host_mode:  # the image holds the interpreter and the code
            return [
                Mount(str(path), str(path), type="bind", read_only=path != run.scratch)
                for path in (run.scratch, *run.read_only)
            ]
        return [
            Mount(str(target), str(source), type="bind", read_only=not writable)
            for target, source, writable in sandbox_mounts(
                run.scratch, host_dirs=("/usr",), cache=run.cache, read_only=run.read_only
            )
        ]

    def run(self, run: SandboxRun) -> SandboxOutcome:
        """Run the command in a fresh container. An engine or runtime failure (API error,
        OCI runtime error, lost connection) raises SandboxInfraError with a one-line reason."""
        try:
            self._ensure_image()
            container = self._create(run)
        except self.engine_errors as error:
            raise SandboxInfraError(
                f"docker could not create the sandbox container: {_reason(error)}"
            ) from None
        start = time.monotonic()
        try:
            container.start()
            timed_out = wait_or_kill(
                _ContainerProcess(container), run, start, lambda: _kill(container)
            )
            container.reload()
            state = container.attrs["State"]
            output = container.logs(stdout=True, stderr=True)[-TAIL_BYTES:]
        except self.engine_errors as error:
            raise SandboxInfraError(
                f"docker failed running the sandbox container: {_reason(error)}"
            ) from None
        finally:
            self._remove(container)
        exceeded = output.endswith(MARKER)
        exit_code = state.get("ExitCode")
        if timed_out or exceeded or state.get("OOMKilled"):
            exit_code = -signal.SIGKILL  # killed by us, the output cap or the memory cgroup
        elif exit_code is not None and 128 < exit_code < 128 + signal.NSIG:
            exit_code = (
                128 - exit_code
            )  # the cap reports a signal as a shell does; as Popen does here
        isolation = (
            "docker: no network, read-only root, tmpfs /tmp, no capabilities, no-new-privileges",
            f"uid {SANDBOX_UID}",
            "memory/pids/cpu cgroup limits",
            "clean environment",
        )
        return SandboxOutcome(
            exit_code,
            timed_out,
            exceeded,
            time.monotonic() - start,
            output.decode("utf-8", errors="replace"),
            isolation,
        )

    def _create(self, run: SandboxRun):
        hand_over_scratch(run.scratch, to_sandbox_uid=self.as_root, read_only=run.read_only)
        if run.cache is not None:
            hand_over_scratch(run.cache, to_sandbox_uid=self.as_root)
        limits = run.limits
        python = sys.executable if self.host_mode else "python"
        env = {
            **BASE_ENV,
            "HOME": str(run.scratch),
            "TMPDIR": "/tmp",
            **platform_env(run.gpu),
            **run.env,
        }
        device_requests = None
        if run.gpu:
            device_requests = [self.docker.types.DeviceRequest(count=1, capabilities=[["gpu"]])]
        Ulimit = self.docker.types.Ulimit
        return self.client.containers.create(
            self.image,
            command=[
                python,
                "-m",
                "sandbox.output_cap",
                str(limits.output_bytes),
                python,
                *run.args,
            ],
            user=f"{SANDBOX_UID}:{SANDBOX_UID}",
            working_dir=str(run.scratch),
            environment=env,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={TMPFS_BYTES},mode=1777"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=limits.processes,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,
            nano_cpus=int((os.cpu_count() or 1) * 1e9),
            ulimits=[
                Ulimit(name="fsize", soft=limits.file_bytes, hard=limits.file_bytes),
                Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
                Ulimit(name="core", soft=0, hard=0),
            ],
            mounts=self._mounts(run),
            labels={LABEL: _owner()},
            device_requests=device_requests,
            # The cap keeps the log under this size; it is a second line of defence.
            log_config=self.docker.types.LogConfig(
                type="json-file",
                config={"max-size": str(limits.output_bytes + TAIL_BYTES), "max-file": "1"},
            ),
        )

    def preflight(self) -> None:
        """The import probe, run in a real container: an image or mount plan that cannot start
        (an OCI runtime error) makes the backend unavailable here, with the reason."""
        try:
            require_imports(self, f"the sandbox image {self.image}")
        except SandboxInfraError as error:
            raise SandboxUnavailable(
                f"the sandbox image {self.image} cannot run: {error}"
            ) from None


def _reason(error) -> str:
    """The engine's own explanation when it gave one (an APIError's str repeats the URL)."""
    return one_line(getattr(error, "explanation", None) or error)


class _ContainerProcess:
    """Just enough of subprocess.Popen's wait() for wait_or_kill."""

    def __init__(self, container):
        self.container = container

    def wait(self, timeout=None):
        import requests

        try:
            self.container.wait(timeout=timeout)
        except (
            requests.exceptions.ReadTimeout,
            requests.exceptions.ConnectionError,
        ):  # a read timeout, either way
            raise subprocess.TimeoutExpired("container", timeout) from None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _orphaned(owner: str) -> bool:
    """Whether the process named by a container's owner label is gone (an unreadable label
    counts as gone; another host's process cannot be checked, so it is left alone)."""
    host, _, pid = owner.rpartition(":")
    if not pid.isdigit():
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False


def _kill(container) -> None:
    try:
        container.kill()
    except Exception:  # already gone
        pass
