"""`scientist es`: the evolution-strategies baseline (an LPO drift network meta-learned by
OpenES)."""

import signal
from typing import Annotated, Optional

import typer
from rich.console import Console

from sandbox.budgets import BUDGET_NAMES
from sandbox.vocabulary import ExecutorName, Sandbox, Status
from scientist.commands.options import (
    MAX_AT_ONCE,
    DbOption,
    ExecutorOption,
    RayAddressOption,
    SandboxOption,
    count_option,
    engine_for,
    executor_for,
    seed_option,
)
from scientist.commands.reporting import exit_on

console = Console(stderr=True)
out = Console()


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: the last finished generation is kept


def es(
    name: Annotated[
        str, typer.Option("--name", help="campaign name; an existing ES campaign is continued")
    ],
    task: Annotated[
        str, typer.Option(help="task (only mirror_drift: ES learns a drift network)")
    ] = "mirror_drift",
    budget: Annotated[
        str, typer.Option(help=f"{BUDGET_NAMES}: envs, steps and score references")
    ] = "smoke",
    generations: Annotated[
        int, count_option("ES generations in total (a continued run adds the rest)")
    ] = 10,
    population: Annotated[
        Optional[int], count_option("ES population, even (default 64)", low=2, high=MAX_AT_ONCE)
    ] = None,
    seeds: Annotated[
        Optional[int], count_option("PPO seeds per member and env (default 8)", high=MAX_AT_ONCE)
    ] = None,
    sigma: Annotated[
        Optional[float], typer.Option(help="initial ES sampling std (default 0.03)")
    ] = None,
    lr: Annotated[
        Optional[float],
        typer.Option(help="initial Adam learning rate of the ES mean (default 0.01)"),
    ] = None,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="no PPO term, random output layer (LPO-Zero)")
    ] = False,
    member_batch: Annotated[
        Optional[int],
        count_option("members trained at once (memory); 0 = all", low=0, high=MAX_AT_ONCE),
    ] = None,
    render_every: Annotated[
        int,
        count_option("also evaluate the ES mean every K generations; 0 = only at the end", low=0),
    ] = 0,
    sandbox: SandboxOption = Sandbox.AUTO,
    seed: Annotated[int, seed_option("ES and training seed")] = 0,
    executor: ExecutorOption = ExecutorName.LOCAL,
    ray_address: RayAddressOption = None,
    db: DbOption = None,
) -> None:
    """Meta-learn an LPO drift network with evolution strategies, then score its mean network
    through the same sandbox and scorer as every other candidate."""
    import dataclasses

    from harness.backends import SandboxUnavailable
    from scientist.es.campaign import ESCampaignError, run_es_campaign
    from scientist.es.trainer import ESSettings

    if task != "mirror_drift":
        raise typer.BadParameter(
            f"the ES baseline only supports task mirror_drift (it learns a drift), not {task!r}",
            param_hint="--task",
        )
    given = dict(
        population=population, seeds=seeds, sigma=sigma, learning_rate=lr, member_batch=member_batch
    )
    settings = dataclasses.replace(
        ESSettings(ppo_init=not from_scratch), **{k: v for k, v in given.items() if v is not None}
    )
    try:
        settings.validate()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None

    engine = engine_for(db)
    signal.signal(signal.SIGTERM, _interrupt)
    status = console.status(f"ES campaign {name}: starting")
    status.start()

    def on_progress(p) -> None:
        if p.phase in ("compile+train", "train"):
            status.update(
                f"generation {p.generation + 1}/{p.generations}: "
                + ("compiling and training" if p.phase == "compile+train" else "training")
                + f" {settings.population} × {settings.seeds} agents"
            )
        elif p.phase == "checkpoint":
            r = p.last
            compile_note = f" ({r.compile_seconds:.1f} s compile)" if r.compile_seconds else ""
            out.print(
                f"generation {r.generation}/{p.generations}: best {r.best:.3f} mean {r.mean:.3f} "
                f"std {r.std:.3f} · "
                f"{r.train_seconds + r.compile_seconds + r.tell_seconds:.1f} s{compile_note} · "
                f"{r.env_steps:,} env steps at {r.env_steps_per_second:,.0f}/s",
                highlight=False,
            )
        elif p.phase == "evaluate":
            status.update(f"evaluating the ES mean (candidate #{p.candidate_id}) in the sandbox")
        elif p.phase == "evaluated":
            fitness = "–" if p.candidate_fitness is None else f"{p.candidate_fitness:.3f}"
            test = "–" if p.candidate_meta_test is None else f"{p.candidate_meta_test:.3f}"
            out.print(
                f"candidate #{p.candidate_id} (ES mean): {p.candidate_status} · "
                f"fitness {fitness} · meta-test {test}",
                highlight=False,
            )

    with (
        exit_on(
            status,
            (
                (ESCampaignError, 1, "ES campaign stopped"),
                (ValueError, 1, "ES campaign stopped"),
                (KeyError, 1, "ES campaign stopped"),
                (SandboxUnavailable, 2, "sandbox unavailable"),
            ),
            f"interrupted; `scientist es --name {name} ...` continues from the last generation",
        ),
        executor_for(executor, ray_address) as runs,
    ):
        candidate = run_es_campaign(
            engine,
            settings,
            name,
            task,
            budget,
            generations,
            seed,
            on_progress,
            sandbox=sandbox,
            render_every=render_every,
            executor=runs,
        )
    _summary(engine, name, candidate)
    raise typer.Exit(0 if candidate is not None and candidate.status == Status.OK else 1)


def _summary(engine, name: str, candidate) -> None:
    from archive import reads
    from archive.db import transaction

    with transaction(engine) as session:
        campaign = reads.get_campaign(session, name)
        totals = reads.es_totals(session, campaign.id)
    out.print(
        f"campaign {name}: {campaign.status} · {totals['generations']} generations · "
        f"{totals['training_runs']:,} training runs · {totals['env_steps']:,} env steps · "
        f"{totals['wall_seconds']:.0f} s · $0",
        highlight=False,
    )
    if candidate is not None:
        fitness = "–" if candidate.fitness is None else f"{candidate.fitness:.3f}"
        out.print(
            f"final ES mean: candidate #{candidate.id}, {candidate.status}, "
            f"sandbox score (fitness) {fitness}",
            highlight=False,
        )
