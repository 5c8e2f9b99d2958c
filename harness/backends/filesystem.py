"""What a sandboxed command sees of the host's files, shared by both backends.

A sandbox needs three things from the host, all read-only: the Python interpreter with its
site-packages, the code it runs (`sandbox/`, `task_templates/`), and nothing else of the
checkout. The code comes from a world-readable snapshot mounted at the repository's own path
(the editable install points there, and a checkout in a 0700 directory would be unreadable
to uid 65534). The interpreter is bound at its own paths, wherever it lives: inside the
checkout (`.venv`), under a 0700 home, behind symlinks. A venv inside the checkout would be
hidden by the snapshot mounted over the repository, so the snapshot carries an empty
directory at each such path for the venv to be mounted on (a read-only mount cannot grow
one).
"""

import functools
import hashlib
import os
import shutil
import site
import sys
import tempfile
import time
from pathlib import Path

SANDBOX_UID = 65534  # nobody
REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("sandbox", "task_templates")


# -- the interpreter ------------------------------------------------------------------------
def _symlink_hops(path: Path) -> list[Path]:
    """`path` and every link it passes through on the way to the real file."""
    hops = [path]
    for _ in range(40):
        if not path.is_symlink():
            break
        target = Path(os.readlink(path))
        path = Path(os.path.normpath(target if target.is_absolute() else path.parent / target))
        hops.append(path)
    return hops


@functools.cache
def interpreter_mounts() -> dict[Path, Path]:
    """Where the interpreter must appear inside a sandbox (keys) and the host directory
    mounted there (values): the prefixes, the site-packages and every directory the
    executable's symlinks pass through, each at the path Python knows it by and at its
    resolved path."""
    needed = {
        Path(sys.prefix),
        Path(sys.base_prefix),
        *(Path(p) for p in site.getsitepackages()),
        *(hop.parent for hop in _symlink_hops(Path(sys.executable))),
    }
    wanted: dict[Path, Path] = {}
    for path in sorted(needed):
        path = Path(os.path.abspath(path))
        if path.exists() and path != Path("/"):
            wanted.setdefault(path, path.resolve())
            wanted.setdefault(path.resolve(), path.resolve())
    return wanted


def mount_points_in_checkout() -> tuple[Path, ...]:
    """Paths, relative to the repository, at which interpreter directories are mounted over
    the code snapshot (a `.venv` in the checkout)."""
    points = {
        path.relative_to(REPO_ROOT) for path in interpreter_mounts() if REPO_ROOT in path.parents
    }
    return tuple(sorted(points))


def sandbox_mounts(
    scratch: Path,
    host_dirs: tuple[str, ...] = (),
    cache: Path | None = None,
    read_only: tuple[Path, ...] = (),
) -> list[tuple[Path, Path, bool]]:
    """Every mount a sandbox needs, as (path inside, host path, writable), parents before
    children so that no mount hides a later one: `host_dirs` at their own paths, the
    interpreter, the code snapshot at the repository's path, and the scratch directory, the
    only writable one but for `cache` (SandboxRun.cache) and less its `read_only` parts
    (SandboxRun.read_only). A path that an enclosing read-only mount already shows as it
    should is left out (Docker refuses two mounts at one path)."""
    wanted = {Path(d): (Path(d), False) for d in host_dirs}
    for target, source in interpreter_mounts().items():
        wanted.setdefault(target, (source, False))
    wanted[REPO_ROOT] = (code_snapshot(), False)
    wanted[scratch] = (scratch, True)
    if cache is not None:
        wanted[cache] = (cache, True)
    for path in read_only:
        wanted[Path(path)] = (Path(path), False)
    kept: list[tuple[Path, Path, bool]] = []
    for target in sorted(wanted, key=lambda p: (len(p.parts), p)):
        source, writable = wanted[target]
        enclosing = next((m for m in reversed(kept) if m[0] in target.parents), None)
        if (
            not writable
            and enclosing is not None
            and not enclosing[2]
            and enclosing[1] / target.relative_to(enclosing[0]) == source
        ):
            continue
        kept.append((target, source, writable))
    return kept


# -- the code snapshot ------------------------------------------------------------------------
@functools.cache
def _snapshot_plan() -> tuple[list[Path], tuple[Path, ...], str]:
    """(files to copy, mount points, content digest), computed once per process."""
    points = mount_points_in_checkout()
    hidden = [REPO_ROOT / p for p in points]
    files = sorted(
        p
        for d in CODE_DIRS
        for p in (REPO_ROOT / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not any(h in p.parents for h in hidden)
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes())
    for point in points:
        digest.update(b"mount\0" + str(point).encode())
    return files, tuple(points), digest.hexdigest()[:16]


def code_snapshot() -> Path:
    """A world-readable copy of sandbox/ and task_templates/, with empty mount points for the
    interpreter directories inside the checkout. Keyed by content, so it is made once per
    scratch root (and again if something has removed it since)."""
    files, points, digest = _snapshot_plan()
    root = scratch_root()
    target = root / f"code-{digest}"
    if not target.exists():
        for stale in root.glob("code-*"):  # older code versions, unused for a day
            if time.time() - stale.stat().st_mtime > 86400:
                shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix="code-staging-"))
        for path in files:
            destination = staging / path.relative_to(REPO_ROOT)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        for point in points:
            (staging / point).mkdir(parents=True, exist_ok=True)
        for path in [staging, *staging.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return target


# -- scratch directories ----------------------------------------------------------------------
def scratch_root() -> Path:
    root = Path(os.environ.get("SCIENTIST_SCRATCH", "/tmp/scientist-sandbox"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # others may traverse to their own run directory, not list the rest
    return root


def new_scratch(prefix: str = "run-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_root()))


def program_cache() -> Path:
    """The compilation cache of runs that execute no candidate code (expression programs):
    beside the scratch directories, writable by the sandboxed user, mounted only into such
    runs."""
    return scratch_root() / "xla-programs"


def hand_over_scratch(
    scratch: Path, to_sandbox_uid: bool, read_only: tuple[Path, ...] = ()
) -> None:
    """Make the scratch directory writable by the sandboxed user, and only there: what lies
    in `read_only` (its inputs) stays the trusted user's, readable and not writable by a
    sandboxed user of another uid even where no mount can make it read-only."""
    scratch.mkdir(parents=True, exist_ok=True)
    for path in [scratch, *scratch.rglob("*")]:
        if any(path == p or p in path.parents for p in read_only):
            path.chmod(0o755 if path.is_dir() else 0o644)
        elif to_sandbox_uid:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)
        elif path.is_dir():
            path.chmod(0o777)  # the sandbox runs as another uid we cannot chown to
