"""The `scientist` command line."""

import sandbox  # noqa: F401  (sets XLA flags before anything imports jax)

# isort: split

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from archive.db import ArchiveError
from sandbox.fitness import Estimate
from sandbox.vocabulary import Sandbox, Status
from scientist.commands.json_output import print_json
from scientist.commands.options import SandboxOption
from scientist.commands.sources import read_candidate

console = Console(stderr=True)


class Commands(TyperGroup):
    """Every command: an unusable archive (missing, damaged, not ours, another schema) ends
    it with ArchiveError's one line and exit status 2, wherever it was found."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ArchiveError as error:
            console.print(f"[red]{escape(str(error))}", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Automated discovery of reinforcement-learning algorithms.",
)


def _register_campaign_commands() -> None:
    from scientist.commands import archive, campaign, compare, distill, es, plot, report, web

    app.command()(campaign.run)
    app.command()(campaign.resume)
    app.command()(campaign.status)
    app.add_typer(archive.app, name="archive")
    app.command()(es.es)
    app.command()(compare.compare)
    app.add_typer(plot.app, name="plot")
    app.command()(distill.distill)
    app.command()(web.web)
    app.command()(report.report)


class _RichProgress:
    """Adapts the trainer's progress(phase, done, total) calls to a rich progress bar."""

    def __init__(self, progress: Progress, label: str):
        self.progress, self.label, self.tasks = progress, label, {}

    def __call__(self, phase: str, completed: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(f"{self.label}: {phase}", total=total)
        self.progress.update(self.tasks[phase], completed=completed, total=total)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@app.command()
def train(
    baseline: Annotated[
        str | None,
        typer.Option(
            help="A mirror_drift baseline: ppo, dpo, zero (task_templates/mirror_drift/baselines)."
        ),
    ] = None,
    candidate: Annotated[
        Path | None,
        typer.Option(
            help="Python file defining drift(ratio, advantage); it must pass the static checks."
        ),
    ] = None,
    env: Annotated[str, typer.Option(help="gymnax environment id.")] = "CartPole-v1",
    seeds: Annotated[
        int | None,
        typer.Option(
            min=1, help="Seeds trained in one vmapped call (default: the budget's, else 8)."
        ),
    ] = None,
    timesteps: Annotated[
        int | None,
        typer.Option(
            min=1, help="Environment steps per seed (default: the budget's, else the env preset's)."
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            help=(
                "Named budget (smoke, quick, paper): sets steps and seeds and enables normalised "
                "scores."
            )
        ),
    ] = None,
    lr: Annotated[
        list[float] | None,
        typer.Option(help="Learning rate; repeat for a sweep compiled into the same call."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    eval_seed: Annotated[
        int | None,
        typer.Option(help="Seed of the evaluation episodes (default: seed + 1_000_003)."),
    ] = None,
    eval_episodes: Annotated[
        int | None, typer.Option(min=1, help="Evaluation episodes per trained policy.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
):
    """Train PPO-family agents with a built-in or candidate drift, vmapped over seeds."""
    from sandbox.budgets import get_budget
    from sandbox.candidate import CandidateLoadError, load_entry_point
    from sandbox.tasks import load_baseline, load_task
    from sandbox.training.components import Components
    from sandbox.training.config import preset
    from sandbox.training.ppo import CandidateContractError
    from sandbox.training.run import evaluate_batch, summarise, train_batch

    if baseline and candidate:
        raise typer.BadParameter("give either --baseline or --candidate, not both")
    if candidate is not None:
        source, drift_name = read_candidate(candidate, "--candidate"), str(candidate)
        try:
            drift = load_entry_point(source, "drift", filename=drift_name)
        except CandidateLoadError as error:
            console.print(f"[red]candidate rejected:[/red] {error}")
            raise typer.Exit(1) from None
    else:
        drift_name = baseline or "ppo"
        choices = load_task("mirror_drift").baseline_names
        if drift_name not in choices:
            raise typer.BadParameter(
                f"unknown baseline {drift_name!r}; choose from {', '.join(choices)}"
            )
        drift = load_baseline("mirror_drift", drift_name)

    overrides = {}
    reference = None
    try:
        if budget is not None:
            chosen = get_budget(budget)
            entry = chosen.env(env)
            seeds = seeds or chosen.seeds
            overrides["eval_episodes"] = chosen.eval_episodes
            timesteps = timesteps or entry.timesteps
            # Normalised scores are only meaningful at the budget's own step count.
            reference = entry if timesteps == entry.timesteps else None
        if timesteps is not None:
            overrides["total_timesteps"] = timesteps
        if eval_episodes is not None:
            overrides["eval_episodes"] = eval_episodes
        config = preset(env, **overrides)
    except (KeyError, ValueError) as error:  # unknown budget or env, bad step count
        raise typer.BadParameter(error.args[0]) from None
    seeds = seeds or 8

    components = Components(drift=drift)
    eval_seed = seed + 1_000_003 if eval_seed is None else eval_seed
    try:
        if json_output:
            batch = train_batch(config, components, seeds=seeds, seed=seed, learning_rates=lr)
            start = time.perf_counter()
            final_returns = evaluate_batch(batch, eval_seed=eval_seed)
        else:
            with _progress() as progress:
                batch = train_batch(
                    config,
                    components,
                    seeds=seeds,
                    seed=seed,
                    learning_rates=lr,
                    progress=_RichProgress(progress, env),
                )
                task = progress.add_task(f"{env}: evaluate", total=None)
                start = time.perf_counter()
                final_returns = evaluate_batch(batch, eval_seed=eval_seed)
                progress.update(task, total=1, completed=1)
    except CandidateContractError as error:
        console.print(f"[red]candidate broke its contract:[/red] {error}")
        raise typer.Exit(1) from None
    eval_seconds = time.perf_counter() - start

    summaries = summarise(batch, final_returns, reference)
    best = max(summaries, key=lambda s: s.returns.iqm)
    result = {
        **best.to_dict(),
        "drift": drift_name,
        "budget": budget,
        "compile_seconds": batch.compile_seconds,
        "train_seconds": batch.train_seconds,
        "eval_seconds": eval_seconds,
        "env_steps_per_second": batch.env_steps / batch.train_seconds,
        "total_env_steps": batch.env_steps,
    }
    if len(summaries) > 1:
        result["sweep"] = [s.to_dict() for s in summaries]
    if json_output:
        print_json(result)
    else:
        _print_training_summary(result, summaries)


def _print_training_summary(result: dict, summaries) -> None:
    out = Console()
    table = Table(
        title=(
            f"{result['env']} · drift {result['drift']} · "
            f"{result['seeds']} seeds × {result['timesteps']:,} steps"
        )
    )
    for column in ("learning rate", "IQM return", "95% CI", "median", "normalised IQM"):
        table.add_column(column, justify="right")
    for s in summaries:
        norm = "–" if s.normalised is None else s.normalised.estimate.describe(3)
        table.add_row(
            f"{s.learning_rate:.2e}",
            f"{s.returns.iqm:.1f}",
            s.returns.estimate.interval_text(1),
            f"{s.returns.median:.1f}",
            norm,
        )
    out.print(table)
    out.print("final returns per seed: " + ", ".join(f"{x:.1f}" for x in result["final_returns"]))
    out.print(
        f"compile {result['compile_seconds']:.1f} s · train {result['train_seconds']:.1f} s · "
        f"evaluate {result['eval_seconds']:.1f} s · "
        f"{result['env_steps_per_second']:,.0f} env steps/s"
    )


RANDOM_POLICY_EPISODES = 1024


@app.command()
def calibrate(
    budget: Annotated[
        str, typer.Option(help="Budget whose reference returns to measure.")
    ] = "smoke",
    env: Annotated[
        list[str] | None, typer.Option(help="Only these environments (repeatable).")
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="PPO seeds per environment.")] = 16,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 12345,
    json_output: Annotated[bool, typer.Option("--json")] = False,
):
    """Measure the random-policy and PPO reference returns that normalise scores at a budget."""
    import dataclasses

    import jax
    import numpy as np

    from sandbox.budgets import get_budget
    from sandbox.fitness import interquartile_mean
    from sandbox.training.evaluate import make_evaluate, uniform_policy_params
    from sandbox.training.run import evaluate_batch, train_batch

    chosen = get_budget(budget)
    rows = {}
    for env_id in env or chosen.env_ids:
        config = chosen.config(env_id)
        # The random policy's return is cheap to pin down precisely: many more episodes.
        random_config = dataclasses.replace(config, eval_episodes=RANDOM_POLICY_EPISODES)
        random_returns = jax.jit(make_evaluate(random_config))(
            uniform_policy_params(config, jax.random.key(0)), jax.random.key(seed + 1)
        )
        batch = train_batch(config, seeds=seeds, seed=seed)
        ppo_returns = evaluate_batch(batch, eval_seed=seed + 2)[0]
        rows[env_id] = {
            "random_return": float(np.mean(random_returns)),
            "ppo_return": interquartile_mean(ppo_returns),
            "ppo_returns": [float(x) for x in ppo_returns],
            "timesteps": config.env_steps,
            "train_seconds": batch.train_seconds,
        }
        if not json_output:
            console.print(
                f"{env_id}: random {rows[env_id]['random_return']:.2f}, "
                f"PPO IQM {rows[env_id]['ppo_return']:.2f}"
            )
    if json_output:
        print_json({"budget": budget, "seeds": seeds, "envs": rows})


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="Candidate module to check.")],
    task: Annotated[
        str, typer.Option(help="Task whose contract and validity conditions apply.")
    ] = "mirror_drift",
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Check a candidate without training it: static rules, contract, validity conditions.
    Exit 0 when valid, 1 when invalid or rejected, 2 for a usage error."""
    from sandbox.checks.pipeline import check_candidate
    from sandbox.tasks import TaskError, load_task

    try:
        spec = load_task(task)
    except TaskError as error:
        raise typer.BadParameter(str(error), param_hint="--task") from None
    source = read_candidate(file, "FILE")
    report = check_candidate(spec, source, filename=str(file))
    if json_output:
        print_json(report.to_dict())
    else:
        out = Console()
        for result in report.checks:
            mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
            proof = ""
            if result.proof:
                p = result.proof
                proof = f" [certificate: {p['verdict']}, {p['boxes']} boxes: {p['detail']}]"
            out.print(f"{mark} {result.name}: {result.detail}{proof}", highlight=False)
        label = f"valid ({report.assurance})" if report.valid else "invalid"
        out.print(f"[bold]{label}[/bold] {spec.name} candidate: {file}")
    raise typer.Exit(0 if report.valid else 1)


@app.command()
def evaluate(
    file: Annotated[Path, typer.Argument(help="Candidate module to evaluate.")],
    task: Annotated[str, typer.Option(help="Task the candidate is for.")] = "mirror_drift",
    budget: Annotated[str, typer.Option(help="smoke, quick or paper.")] = "smoke",
    sandbox_name: SandboxOption = Sandbox.AUTO,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Evaluate an untrusted candidate: static checks, then trace, validity, smoke and full
    runs in the sandbox, then the trusted scorer. Exit 0 when the status is ok, 1 for any
    verdict against the candidate, 2 when no sandbox could run it (status infra: the
    sandbox itself failed)."""
    from sandbox.backends import SandboxUnavailable
    from sandbox.budgets import get_budget
    from sandbox.cascade import evaluate_candidate
    from sandbox.tasks import TaskError, load_task

    try:
        load_task(task).split(get_budget(budget).name)
    except (TaskError, KeyError) as error:
        raise typer.BadParameter(error.args[0]) from None
    source = read_candidate(file, "FILE")
    try:
        if json_output:
            result = evaluate_candidate(task, source, budget, sandbox=sandbox_name, seed=seed)
        else:
            with console.status(f"evaluating {file} ({task}, {budget} budget)"):
                result = evaluate_candidate(task, source, budget, sandbox=sandbox_name, seed=seed)
    except SandboxUnavailable as error:
        console.print(f"[red]sandbox unavailable:[/red] {error}")
        raise typer.Exit(2) from None
    if json_output:
        print_json(result.to_dict())
    else:
        _print_evaluation(result)
    raise typer.Exit({Status.OK: 0, Status.INFRA: 2}.get(result.status, 1))


def _print_evaluation(result) -> None:
    out = Console()
    for stage in result.stages:
        mark = "[green]ok[/green]" if stage.status == Status.OK else f"[red]{stage.status}[/red]"
        out.print(
            f"{stage.name:>9} {mark} {stage.seconds:6.1f} s  {stage.detail[:160]}", highlight=False
        )
    for part, envs in result.per_env.items():
        for env_id, data in envs.items():
            out.print(
                f"{part:>10} {env_id:<22} return IQM {data['return_iqm']:8.2f}   normalised "
                + Estimate.of_entry(data["normalised"]).describe(3),
                highlight=False,
            )
    fitness = "–" if result.fitness is None else f"{result.fitness:.3f}"
    out.print(
        f"[bold]{result.status}[/bold] fitness {fitness} "
        f"({result.backend} sandbox, {result.seconds:.1f} s)"
    )


_register_campaign_commands()

if __name__ == "__main__":
    app()
