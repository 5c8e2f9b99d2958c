"""`scientist web`: browse the archive in a web browser (read-only)."""

import ipaddress
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from sandbox.vocabulary import Sandbox
from scientist.commands.options import DbOption, SandboxOption, console, count_option
from scientist.web.landscapes import DEFAULT_CACHE


def web(
    db: DbOption = None,
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on; the archive (code, prompts) is shown to "
            "whoever can reach it, without a login"
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    cache: Annotated[
        Path, typer.Option("--cache", help="directory of drift landscapes (npz per code hash)")
    ] = DEFAULT_CACHE,
    compute_landscapes: Annotated[
        bool,
        typer.Option(
            "--compute-landscapes",
            help="compute missing drift landscapes in the sandbox, in the background",
        ),
    ] = False,
    precompute: Annotated[
        Optional[str],
        typer.Option(
            "--precompute",
            metavar="NAME",
            help="fill the landscape cache for campaign NAME's scored candidates "
            "(best first, in the sandbox), then exit",
        ),
    ] = None,
    top: Annotated[Optional[int], count_option("with --precompute: only the best K")] = None,
    sandbox: SandboxOption = Sandbox.AUTO,
) -> None:
    """A read-only web view of the archive: campaigns, leaderboards, fitness over
    generations, islands, costs, candidates (code, diff, lineage, checks, scores, curves,
    drift heatmaps) and side-by-side comparisons. It never runs candidate code itself."""
    from archive.db import open_reader
    from scientist.web.landscapes import LandscapeCache

    engine = open_reader(db)  # an unusable archive ends the command in one line (scientist.cli)
    if precompute is not None:
        _precompute(engine, precompute, LandscapeCache(cache), sandbox, top)
        return
    import uvicorn

    from scientist.web.app import create_app

    if not _loopback(host):
        console.print(
            f"[yellow]listening on {host}: anyone who can reach it can read the whole archive"
        )
    console.print(
        f"archive browser on http://{host}:{port}/ (read-only; landscapes in {cache}"
        + (", computed on demand" if compute_landscapes else "")
        + ")"
    )
    uvicorn.run(
        create_app(engine, cache, compute_landscapes, sandbox_backend=sandbox, host=host),
        host=host,
        port=port,
        log_level="warning",
    )


def _precompute(engine, name: str, cache, sandbox: str, top: int | None) -> None:
    from harness.backends import SandboxUnavailable
    from scientist.web.landscapes import precompute

    try:
        result = precompute(
            engine,
            name,
            cache,
            sandbox=sandbox,
            top=top,
            echo=lambda line: console.print(line, markup=False, highlight=False),
        )
    except (LookupError, ValueError) as error:
        console.print(f"[red]{escape(str(error))}")
        raise typer.Exit(2) from None
    except SandboxUnavailable as error:
        console.print(f"[red]sandbox unavailable:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    console.print(
        f"{name}: {result.computed} landscapes computed, {result.cached} already cached, "
        f"{len(result.failed)} failed; cache {cache.directory}"
    )
    raise typer.Exit(1 if result.failed else 0)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
