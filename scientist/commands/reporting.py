"""How long-running commands end on an error: stop the spinner, say what happened, exit."""

import contextlib

import typer

from scientist.commands.options import console


@contextlib.contextmanager
def exit_on(status, errors: tuple[tuple[type[BaseException], int, str], ...], interrupted: str):
    """Map each (exception type, exit code, label) to a red message and that exit code, and
    Ctrl-C to `interrupted` and 130; the status spinner is stopped in every case."""
    try:
        yield
    except KeyboardInterrupt:
        status.stop()
        console.print(f"[yellow]{interrupted}")
        raise typer.Exit(130) from None
    except tuple(kind for kind, _, _ in errors) as error:
        status.stop()
        code, label = next((code, label) for kind, code, label in errors if isinstance(error, kind))
        console.print(f"[red]{label}:[/red] {error}")
        raise typer.Exit(code) from None
    status.stop()
