"""`scientist run`, `resume` and `status`."""

import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.live import Live
from rich.markup import escape

from archive import reads
from archive.db import open_reader, transaction
from archive.lease import CampaignBusy, runner_alive
from sandbox.budgets import BUDGET_NAMES, REEVALUATION_BLOCKS
from sandbox.vocabulary import ExecutorName, RankBy
from scientist.campaign.config import CampaignConfig
from scientist.campaign.display import (
    campaign_summary,
    leaderboard_table,
    progress_line,
    progress_view,
)
from scientist.campaign.loop import CampaignError, CampaignLoop
from scientist.commands.options import (
    MAX_AT_ONCE,
    SANDBOX_HELP,
    DbOption,
    campaign_or_exit,
    console,
    count_option,
    engine_for,
    executor_for,
    out,
    seed_option,
)
from scientist.commands.stored import config_note
from scientist.proposers.base import ModelConfigError, ProposerError
from scientist.proposers.registry import PROPOSERS, make_proposer
from scientist.search.paired import versus_baselines


def run(
    name: Annotated[
        Optional[str], typer.Option("--name", help="campaign name; an existing one is resumed")
    ] = None,
    task: Annotated[Optional[str], typer.Option(help="task folder under task_templates/")] = None,
    proposer: Annotated[
        Optional[str],
        typer.Option(
            help=f"one of {', '.join(PROPOSERS)}; default mutation (offline), llm "
            "where --model is given"
        ),
    ] = None,
    model: Annotated[
        Optional[list[str]], typer.Option("--model", help="litellm model; repeat for an ensemble")
    ] = None,
    api_base: Annotated[
        Optional[str], typer.Option(help="OpenAI-compatible base URL (key in $SCIENTIST_API_KEY)")
    ] = None,
    generations: Annotated[
        Optional[int], count_option("generations after the baselines", low=0)
    ] = None,
    population: Annotated[
        Optional[int], count_option("proposals per island per generation")
    ] = None,
    islands: Annotated[Optional[int], count_option()] = None,
    budget: Annotated[Optional[str], typer.Option(help=BUDGET_NAMES)] = None,
    sandbox: Annotated[Optional[str], typer.Option(help=SANDBOX_HELP)] = None,
    workers: Annotated[
        Optional[int], count_option("batches evaluated at once", high=MAX_AT_ONCE)
    ] = None,
    batch: Annotated[
        Optional[int],
        typer.Option(help="candidates per sandbox run (default: from budget and device; README)"),
    ] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="dollar cap on model calls")] = None,
    max_seconds: Annotated[
        Optional[float], typer.Option(help="stop proposing after this many seconds of this run")
    ] = None,
    seed: Annotated[Optional[int], seed_option("seed of the search and its training")] = None,
    seed_baseline: Annotated[
        Optional[list[str]],
        typer.Option(
            "--seed-baseline",
            help="a baseline the search starts from; repeat for several (default: all; the "
            "others are trained as references only)",
        ),
    ] = None,
    selection: Annotated[
        Optional[str],
        typer.Option(
            help="the search strategy, one of scientist/search/strategies: evolution "
            "(default) or none, the best-of-N control arm (README)"
        ),
    ] = None,
    reevaluate_top: Annotated[
        Optional[int],
        count_option("re-evaluate candidates entering an island's top k (0: never)", low=0),
    ] = None,
    reevaluation_blocks: Annotated[
        Optional[int],
        count_option(
            f"fresh blocks of seeds per re-evaluation; default: {REEVALUATION_BLOCKS}",
            high=MAX_AT_ONCE,
        ),
    ] = None,
    screening: Annotated[
        Optional[bool],
        typer.Option(
            "--screening/--no-screening",
            help="screen proposals on the meta-train environments; the meta-test ones train "
            "only for re-evaluated candidates (default: on)",
        ),
    ] = None,
    rank_by: Annotated[
        Optional[RankBy], typer.Option(help="lcb (default): fitness less a standard error; mean")
    ] = None,
    executor: Annotated[
        Optional[ExecutorName], typer.Option(help="where evaluations run: local (default) or ray")
    ] = None,
    ray_address: Annotated[
        Optional[str],
        typer.Option(
            help="Ray cluster address (ray://host:10001, host:6379 "
            "or auto); default: start one on this machine"
        ),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="TOML file with any of these settings")
    ] = None,
    db: DbOption = None,
    top: Annotated[int, count_option("rows of the final leaderboard")] = 10,
) -> None:
    """Run a discovery campaign (or continue one of the same name)."""
    try:
        settings = CampaignConfig.load(
            config,
            name=name,
            task=task,
            proposer=proposer,
            models=model,
            api_base=api_base,
            generations=generations,
            population=population,
            islands=islands,
            budget=budget,
            sandbox=sandbox,
            workers=workers,
            batch=batch,
            max_cost=max_cost,
            max_seconds=max_seconds,
            seed=seed,
            seed_baselines=seed_baseline,
            selection=selection,
            reevaluate_top=reevaluate_top,
            reevaluation_blocks=reevaluation_blocks,
            screening=screening,
            rank_by=rank_by,
            executor=executor,
            ray_address=ray_address,
        )
    except (ValidationError, ValueError, OSError) as error:
        console.print(f"[red]invalid campaign settings:[/red] {error}")
        raise typer.Exit(2) from None
    _run(settings, engine_for(db), top)


def resume(
    name: Annotated[str, typer.Argument()],
    db: DbOption = None,
    workers: Annotated[Optional[int], count_option(high=MAX_AT_ONCE)] = None,
    batch: Annotated[Optional[int], typer.Option()] = None,
    generations: Annotated[Optional[int], count_option("extend the campaign", low=0)] = None,
    max_cost: Annotated[Optional[float], typer.Option()] = None,
    max_seconds: Annotated[Optional[float], typer.Option()] = None,
    executor: Annotated[Optional[ExecutorName], typer.Option(help="local or ray")] = None,
    ray_address: Annotated[Optional[str], typer.Option()] = None,
    top: Annotated[int, count_option()] = 10,
) -> None:
    """Continue a campaign from its archive: pending candidates are evaluated, nothing twice."""
    engine = engine_for(db, create=False)
    with transaction(engine) as session:
        stored = campaign_or_exit(session, name).config
    overrides = {
        k: v
        for k, v in dict(
            workers=workers,
            batch=batch,
            generations=generations,
            max_cost=max_cost,
            max_seconds=max_seconds,
            executor=executor,
            ray_address=ray_address,
        ).items()
        if v is not None
    }
    _run(stored_settings(name, stored, overrides), engine, top)


def stored_settings(name: str, stored, overrides: dict) -> CampaignConfig:
    """A campaign's settings as its archive holds them, checked like new ones: the archive may
    come from someone else, so its task must be a task's name, never a path."""
    from sandbox.tasks import TaskError, load_task

    try:
        settings = CampaignConfig(**{**stored, **overrides})
        load_task(settings.task)
    except (ValidationError, TypeError, TaskError) as error:
        console.print(f"[red]campaign {name} has invalid stored settings:[/red] {error}")
        raise typer.Exit(2) from None
    return settings


def _interrupt(signum, frame):
    # SIGTERM stops a campaign like Ctrl-C: evaluations in flight stay pending
    raise KeyboardInterrupt


def _line_printer():
    """Off a terminal (a pipe, a log file): a line whenever something happened, flushed."""
    last = [None]

    def show(progress) -> None:
        line = progress_line(progress)
        if line != last[0]:
            last[0] = line
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    return show


def _run(settings: CampaignConfig, engine, top: int) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        from sandbox.tasks import load_task

        proposer = make_proposer(settings, load_task(settings.task))
        with executor_for(settings.executor, settings.ray_address) as executor:
            if console.is_terminal:
                with Live(console=console, refresh_per_second=4, transient=False) as live:
                    loop = CampaignLoop(
                        engine,
                        settings,
                        proposer,
                        executor=executor,
                        on_progress=lambda p: live.update(progress_view(p)),
                    )
                    live.update(progress_view(loop.progress))
                    campaign = loop.run()
            else:
                loop = CampaignLoop(
                    engine, settings, proposer, executor=executor, on_progress=_line_printer()
                )
                campaign = loop.run()
    except ModelConfigError as error:  # one line that says what to set, never wrapped
        console.print(f"[red]campaign stopped:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except (
        CampaignError,
        CampaignBusy,
        ProposerError,
        ValueError,
        KeyError,
        RuntimeError,
    ) as error:
        console.print(f"[red]campaign stopped:[/red] {error}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; `scientist resume {settings.name}` continues it")
        raise typer.Exit(130) from None
    with transaction(engine) as session:
        rows = reads.leaderboard(session, campaign.id, top)
        counts = reads.status_counts(session, campaign.id)
        paired = versus_baselines(session, rows)
    console.print(
        f"campaign {campaign.name}: {campaign.status}"
        + (f" ({campaign.message})" if campaign.message else "")
        + " — "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    out.print(
        leaderboard_table(
            rows,
            f"{campaign.name}: top {top} by meta-train fitness (1 = PPO, 0 = random)",
            paired,
        )
    )


def status(
    name: Annotated[str, typer.Argument()],
    db: DbOption = None,
    top: Annotated[int, count_option("rows of the leaderboard")] = 5,
) -> None:
    """Progress, best so far and dollars spent of a campaign."""
    engine = open_reader(db)
    with transaction(engine) as session:
        campaign = campaign_or_exit(session, name)
        counts, spent = (
            reads.status_counts(session, campaign.id),
            reads.spent_usd(session, campaign.id),
        )
        rows, recent = (
            reads.leaderboard(session, campaign.id, top),
            reads.events(session, campaign.id, 5),
        )
        paired = versus_baselines(session, rows)
    unreadable = config_note(campaign)
    if unreadable:
        console.print(f"[red]{escape(unreadable)}", soft_wrap=True)
    else:
        out.print(campaign_summary(campaign, counts, spent, runner_alive(campaign)))
    out.print(leaderboard_table(rows, f"best {top}", paired))
    for event in recent:
        out.print(f"[dim]{event.time:%H:%M:%S}[/dim] {event.kind}: {event.message[:150]}")
