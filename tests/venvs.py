"""Copies of this working tree with their own virtual environment, for tests that need the
project installed somewhere else (another interpreter layout, or extra files added).

The venv is a real one, made from the base interpreter; its third-party packages are
hard-linked from this environment's site-packages instead of downloaded again (the same
files, in the new venv's own site-packages), and the copy is installed into it by
`pip install --no-deps -e`."""

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OWN_FILES = ("__editable__", "rl_scientist")  # this checkout's editable install, not copied


def copy_working_tree(target: Path) -> Path:
    """The files git knows of (tracked, or new and not ignored), as a fresh clone would have
    them plus any uncommitted change."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another filesystem
        shutil.copy2(source, destination)


def make_venv(path: Path, checkout: Path) -> Path:
    """A venv of the base interpreter at `path` with this environment's packages and the
    checkout installed in it."""
    subprocess.run(
        [sys._base_executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120
    )
    python = path / "bin" / "python"
    packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for source in map(Path, site.getsitepackages()):
        for entry in source.iterdir():
            if entry.name.startswith(OWN_FILES) or (packages / entry.name).exists():
                continue
            if entry.is_dir():
                shutil.copytree(
                    entry, packages / entry.name, copy_function=_link_or_copy, symlinks=True
                )
            else:
                _link_or_copy(entry, packages / entry.name)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(checkout)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return path


def run_from(
    venv: Path, checkout: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`scientist ARGS` with the venv's entry point, from the checkout (`env`: extra variables)."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        [venv / "bin" / "scientist", *args],
        cwd=checkout,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
