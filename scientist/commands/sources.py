"""Reading a candidate file a user names: bounded by the static checks' size limit, so a huge
file is refused after reading one byte past the limit rather than read whole."""

from pathlib import Path

import typer

from sandbox.checks.static import MAX_SOURCE_BYTES


def is_file(path: Path) -> bool:
    """Path.is_file, False rather than OSError for a name the system refuses (too long)."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_candidate(file: Path, param_hint: str) -> str:
    """The file's text; a usage error (exit 2) when it is missing, unreadable, not UTF-8 or
    over MAX_SOURCE_BYTES."""
    if not is_file(file):
        raise typer.BadParameter(f"file not found: {file}", param_hint=param_hint)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise typer.BadParameter(
                f"{file} is over {MAX_SOURCE_BYTES} bytes, the limit of a candidate's source",
                param_hint=param_hint,
            )
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise typer.BadParameter(f"cannot read {file}: {error}", param_hint=param_hint) from None
