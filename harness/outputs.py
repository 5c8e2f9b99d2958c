"""What a sandboxed run left, as the trusted side reads it.

Everything in a scratch directory but the directory itself could have been made or changed
by the untrusted process: a name may be a link to another member's file or to a device, a
directory where a file should be, a pipe that blocks its reader, or gigabytes. So a
member's outputs are read through `Outputs` only: every component of a path opened without
following links, nothing but regular files read, each up to a cap. Whatever is not as the
sandboxed stages write it is that member's own failure (OutputError, one line), never the
reader's crash and never another member's.
"""

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from sandbox.artifacts import MAX_ARTIFACT_BYTES

MAX_RECORD_BYTES = 16 * 1024**2  # stages.jsonl, checks.json, signature.json: kB when honest
MAX_ENTRIES = 1000
BLOCK_DIR = re.compile(r"block-\d{1,4}")  # sandbox.artifacts.block_dir
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputError(Exception):
    """A member's outputs are not what the sandboxed stages write."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a file"


def _mode_of(name: str, directory: int) -> str:
    try:
        return _kind(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return "unreadable"


@dataclass(frozen=True)
class Outputs:
    """One directory the sandboxed process writes (a member's out directory, the batch's
    records), inside a scratch directory the trusted side made."""

    scratch: Path
    path: Path

    def _open(self) -> int:
        """A descriptor of the directory, reached from the scratch directory one component
        at a time, none a link."""
        fd = os.open(self.scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in self.path.relative_to(self.scratch).parts:
                try:
                    inner = os.open(part, _DIRECTORY, dir_fd=fd)
                except FileNotFoundError:
                    raise OutputError("its out directory is gone") from None
                except OSError:
                    raise OutputError(f"its out directory is {_mode_of(part, fd)}") from None
                os.close(fd)
                fd = inner
            return fd
        except BaseException:
            os.close(fd)
            raise

    def read(self, name: str, max_bytes: int = MAX_RECORD_BYTES) -> bytes | None:
        """The bytes of the file `name` in the directory; None when there is none."""
        directory = self._open()
        try:
            try:
                mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
            except FileNotFoundError:
                return None
            if not stat.S_ISREG(mode):
                raise OutputError(f"{name} is {_kind(mode)}, not a file")
            # Not following a link swapped in since, nor waiting on a pipe.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
            with os.fdopen(fd, "rb") as file:
                if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                    raise OutputError(f"{name} is not a file")
                data = file.read(max_bytes + 1)
        except OSError as error:
            raise OutputError(f"{name} is unreadable: {error.strerror}") from None
        finally:
            os.close(directory)
        if len(data) > max_bytes:
            raise OutputError(f"{name} is over {max_bytes} bytes")
        return data

    def check(self) -> None:
        """Raise OutputError unless the directory holds only what the stages write there:
        files (artifacts up to MAX_ARTIFACT_BYTES, the rest up to MAX_RECORD_BYTES) and
        block-<n> directories of them. Then, once the sandboxed process has ended, the
        scorer may open its artifacts by path."""
        directory = self._open()
        try:
            count = self._check_entries(directory, "", top=True)
        except OSError as error:
            raise OutputError(f"its out directory is unreadable: {error.strerror}") from None
        finally:
            os.close(directory)
        if count > MAX_ENTRIES:
            raise OutputError(f"it holds over {MAX_ENTRIES} entries")

    def _check_entries(self, directory: int, prefix: str, top: bool) -> int:
        count = 0
        with os.scandir(directory) as entries:
            for entry in entries:
                count += 1
                if count > MAX_ENTRIES:
                    return count
                name = prefix + entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode) and top and BLOCK_DIR.fullmatch(entry.name):
                    inner = os.open(entry.name, _DIRECTORY, dir_fd=directory)
                    try:
                        count += self._check_entries(inner, name + "/", top=False)
                    finally:
                        os.close(inner)
                    continue
                if not stat.S_ISREG(mode):
                    raise OutputError(f"{name} is {_kind(mode)}, where the stages write files")
                limit = MAX_ARTIFACT_BYTES if name.endswith(".npz") else MAX_RECORD_BYTES
                size = entry.stat(follow_symlinks=False).st_size
                if size > limit:
                    raise OutputError(f"{name} is {size} bytes, over the limit of {limit}")
        return count
