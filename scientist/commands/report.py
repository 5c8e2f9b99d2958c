"""`scientist report NAME`: a paper-style report of a campaign (HTML, PDF, Markdown)."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from sandbox.vocabulary import Sandbox
from scientist.commands.options import DbOption, SandboxOption, console
from scientist.web.landscapes import DEFAULT_CACHE


def report(
    name: Annotated[str, typer.Argument(help="the campaign")],
    out: Annotated[
        Path,  # a file there is a usage error, not mkdir's traceback
        typer.Option("--out", file_okay=False, help="directory to write into (files replaced)"),
    ] = Path("scientist-runs/reports"),
    formats: Annotated[
        str, typer.Option("--format", help="comma-separated: html, pdf, md")
    ] = "html,pdf",
    against: Annotated[
        Optional[list[str]],
        typer.Option(
            "--against",
            help="campaign to compare with (repeatable); default: every other campaign on the task",
        ),
    ] = None,
    db: DbOption = None,
    cache: Annotated[
        Path,
        typer.Option("--cache", help="directory of drift landscapes (shared with scientist web)"),
    ] = DEFAULT_CACHE,
    landscapes: Annotated[
        bool,
        typer.Option(
            "--landscapes/--no-landscapes", help="compute missing drift landscapes in the sandbox"
        ),
    ] = True,
    sandbox: SandboxOption = Sandbox.AUTO,
    narrative: Annotated[
        bool,
        typer.Option(
            "--narrative",
            help="add a discussion written by an LLM "
            "(prose only; its numbers are checked against the data)",
        ),
    ] = False,
    model: Annotated[
        Optional[str],
        typer.Option(help="with --narrative: the model (default: the campaign's first)"),
    ] = None,
    api_base: Annotated[
        Optional[str],
        typer.Option(
            help="with --narrative: OpenAI-compatible base URL (key in $SCIENTIST_API_KEY)"
        ),
    ] = None,
) -> None:
    """Title and abstract, method, results with CIs (meta-train and held out), figures
    (fitness over generations, learning curves, drift heatmaps), the discovered algorithms
    with their validity checks, the comparison with other methods and their costs, and
    limitations: all from the archive, the same archive giving the same report."""
    from archive.db import ArchiveError, open_reader
    from scientist.report import build_report
    from scientist.report.data import ReportError
    from scientist.report.narrative import NarrativeError
    from scientist.report.render import FORMATS
    from scientist.web.landscapes import LandscapeCache

    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats.split(",") if f.strip()))
    if not chosen or set(chosen) - set(FORMATS):
        raise typer.BadParameter(f"choose from {', '.join(FORMATS)}", param_hint="--format")
    try:
        engine = open_reader(db)
        narrator = _narrator(engine, name, model, api_base) if narrative else None
        with console.status(f"writing the report of {name}..."):
            written = build_report(
                engine,
                name,
                out,
                formats=chosen,
                against=against,
                landscape_cache=LandscapeCache(cache),
                compute_landscapes=landscapes,
                sandbox=sandbox,
                narrator=narrator,
            )
    except (ArchiveError, ReportError) as error:  # (an ArchiveError is a RuntimeError too)
        console.print(f"[red]{escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except NarrativeError as error:
        console.print(
            f"[red]no narrative:[/red] {escape(str(error))} "
            "(run without --narrative for the report alone)"
        )
        raise typer.Exit(1) from None
    except OSError as error:  # no permission, a full disk, a file where a folder belongs
        console.print(f"[red]cannot write the report:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from None
    except RuntimeError as error:  # the PDF toolchain
        console.print(f"[red]{escape(str(error))}")
        raise typer.Exit(1) from None
    for kind, path in written.items():
        console.print(f"{kind}: {path}")


def _narrator(engine, name: str, model: str | None, api_base: str | None):
    from archive import reads
    from archive.db import reading
    from scientist.proposers.llm import LLMProposer, environment_api_key
    from scientist.report.narrative import write_narrative

    with reading(engine) as session:
        campaign = reads.find_campaign(session, name)
    config = campaign.config if campaign else {}
    model = model or next(iter(config.get("models") or []), None)
    if model is None:
        raise typer.BadParameter(
            "the campaign used no LLM; name one with --model", param_hint="--model"
        )
    llm = LLMProposer(
        [model],
        api_base=api_base or config.get("api_base"),
        api_key=environment_api_key(),
        temperature=0.3,
        price_per_million=config.get("price_per_million"),
    )
    return lambda facts: write_narrative(facts, llm)
