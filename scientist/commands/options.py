"""Options several commands share, with their choices taken from the vocabulary."""

import contextlib
from typing import Annotated, Optional

import typer

from sandbox.vocabulary import ExecutorName, Sandbox

SandboxOption = Annotated[
    Sandbox, typer.Option("--sandbox", help="sandbox backend; auto: the strongest that works here")
]
ExecutorOption = Annotated[
    ExecutorName,
    typer.Option(
        "--executor",
        help=(
            "where evaluations run: local (sandboxes on this machine) "
            "or ray (tasks on a Ray cluster)"
        ),
    ),
]
RayAddressOption = Annotated[
    Optional[str],
    typer.Option(
        help=(
            "Ray cluster address (ray://host:10001, host:6379 or auto); "
            "default: start one on this machine"
        )
    ),
]


@contextlib.contextmanager
def executor_for(name: ExecutorName, ray_address: str | None):
    """The executor by name, closed (a Ray cluster started for it shut down) on the way out."""
    from scientist.commands.campaign import console
    from scientist.executors import ExecutorUnavailable, get_executor

    try:
        executor = get_executor(name, ray_address=ray_address)
    except ExecutorUnavailable as error:
        console.print(f"[red]executor {name} unavailable:[/red] {error}")
        raise typer.Exit(2) from None
    try:
        yield executor
    finally:
        executor.close()
