"""What several commands share: the consoles, the archive option, and options whose choices
come from the vocabulary."""

import contextlib
from typing import Annotated, Optional

import typer
from rich.console import Console

from archive import reads
from archive.db import default_url, open_engine
from harness.backends import check_sandbox, sandbox_names
from sandbox.vocabulary import ExecutorName
from scientist.search.seed_blocks import SEED_MODULUS

# Bounds of the integers commands hand to SQL and to numpy/JAX: a value outside them is
# typer's usage error (exit 2), never an OverflowError from a driver half-way through.
MAX_ID = 2**63 - 1  # archive ids are signed 64-bit integers (SQL BIGINT), from 1
MAX_SEED = SEED_MODULUS - 1  # campaigns keep seeds below 2**31 (scientist.search.seed_blocks)
MAX_COUNT = 1_000_000  # rows, generations, attempts...: far beyond any campaign
MAX_AT_ONCE = 4_096  # seeds, episodes, members or workers at once: one array axis or process each
MAX_TIMESTEPS = 2**31 - 1  # JAX counts steps in 32-bit integers

console = Console(stderr=True)
out = Console()

DbOption = Annotated[
    Optional[str],
    typer.Option(
        "--db",
        help="archive URL (sqlite:///path or postgresql://...); "
        f"default $SCIENTIST_DB or {default_url()}",
    ),
]


def engine_for(db: str | None, *, create: bool = True):
    """An engine that writes; an unusable archive ends the command in one line (scientist.cli)."""
    return open_engine(db, create=create)


def campaign_or_exit(session, name: str):
    try:
        return reads.get_campaign(session, name)
    except reads.CampaignNotFound as error:
        console.print(f"[red]{error}")
        raise typer.Exit(2) from None


CandidateId = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="a candidate's archive id")]


def seed_option(help: str):
    """An option naming a seed: 0 to MAX_SEED."""
    return typer.Option(min=0, max=MAX_SEED, help=help)


def count_option(help: str = "", *, low: int = 1, high: int = MAX_COUNT):
    """An option counting something: `low` to `high` (MAX_COUNT, or MAX_AT_ONCE for what is
    held or run at once)."""
    return typer.Option(min=low, max=high, help=help)


def _sandbox(name: str) -> str:
    try:
        return check_sandbox(name)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


SANDBOX_HELP = (
    f"sandbox backend, one of {', '.join(sandbox_names())}; auto: the strongest that works here"
)
SandboxOption = Annotated[str, typer.Option("--sandbox", help=SANDBOX_HELP, callback=_sandbox)]
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
    from scientist.executors.base import ExecutorUnavailable
    from scientist.executors.registry import get_executor

    try:
        executor = get_executor(name, ray_address=ray_address)
    except ExecutorUnavailable as error:
        console.print(f"[red]executor {name} unavailable:[/red] {error}")
        raise typer.Exit(2) from None
    try:
        yield executor
    finally:
        executor.close()
