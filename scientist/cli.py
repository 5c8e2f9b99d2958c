"""The `scientist` command line."""

import sandbox  # noqa: F401  (sets XLA flags before anything imports jax)

# isort: split

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from archive.db import ArchiveError
from sandbox.budgets import BUDGET_NAMES
from sandbox.fitness import Estimate
from sandbox.vocabulary import Sandbox, Status
from scientist.commands.json_output import print_json
from scientist.commands.options import (
    MAX_AT_ONCE,
    MAX_TIMESTEPS,
    SandboxOption,
    count_option,
    seed_option,
)
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
        count_option(
            "Seeds trained in one vmapped call (default: the budget's, else 8).", high=MAX_AT_ONCE
        ),
    ] = None,
    timesteps: Annotated[
        int | None,
        count_option(
            "Environment steps per seed (default: the budget's, else the env preset's).",
            high=MAX_TIMESTEPS,
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            help=(
                f"Named budget ({BUDGET_NAMES}): sets steps and seeds and enables normalised "
                "scores."
            )
        ),
    ] = None,
    lr: Annotated[
        list[float] | None,
        typer.Option(help="Learning rate; repeat for a sweep compiled into the same call."),
    ] = None,
    seed: Annotated[int, seed_option("Training seed.")] = 0,
    eval_seed: Annotated[
        int | None,
        seed_option("Seed of the evaluation episodes (default: seed + 1_000_003)."),
    ] = None,
    eval_episodes: Annotated[
        int | None, count_option("Evaluation episodes per trained policy.", high=MAX_AT_ONCE)
    ] = None,
    sandbox_name: SandboxOption = Sandbox.AUTO,
    timeout: Annotated[
        float,
        typer.Option(min=1.0, help="Seconds a --candidate's sandboxed training may take."),
    ] = 3600.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
):
    """Train PPO-family agents with a built-in or candidate drift, vmapped over seeds. A
    baseline trains in this process; a --candidate file only ever in the sandbox."""
    from sandbox.tasks import load_baseline, load_task
    from sandbox.training.plan import TrainRequest

    if baseline and candidate:
        raise typer.BadParameter("give either --baseline or --candidate, not both")
    request = TrainRequest(
        env=env,
        seeds=seeds,
        timesteps=timesteps,
        budget=budget,
        learning_rates=tuple(lr) if lr else None,
        seed=seed,
        eval_seed=eval_seed,
        eval_episodes=eval_episodes,
    )
    try:
        plan = request.plan()
    except (KeyError, ValueError) as error:  # unknown budget or env, bad step count
        raise typer.BadParameter(error.args[0]) from None
    if candidate is not None:
        source, drift_name = read_candidate(candidate, "--candidate"), str(candidate)
        returns = _train_candidate(request, source, drift_name, sandbox_name, timeout, json_output)
    else:
        from sandbox.training.plan import run_in_process
        from sandbox.training.ppo import Components

        drift_name = baseline or "ppo"
        choices = load_task("mirror_drift").baseline_names
        if drift_name not in choices:
            raise typer.BadParameter(
                f"unknown baseline {drift_name!r}; choose from {', '.join(choices)}"
            )
        components = Components(drift=load_baseline("mirror_drift", drift_name))  # trusted
        if json_output:
            returns = run_in_process(plan, components)
        else:
            with _progress() as progress:
                returns = run_in_process(plan, components, _RichProgress(progress, env))

    summaries = returns.summaries(plan)
    best = max(summaries, key=lambda s: s.returns.iqm)
    env_steps = returns.env_steps(plan)
    result = {
        **best.to_dict(),
        "drift": drift_name,
        "budget": budget,
        "compile_seconds": returns.compile_seconds,
        "train_seconds": returns.train_seconds,
        "eval_seconds": returns.eval_seconds,
        "env_steps_per_second": env_steps / returns.train_seconds,
        "total_env_steps": env_steps,
    }
    if len(summaries) > 1:
        result["sweep"] = [s.to_dict() for s in summaries]
    if json_output:
        print_json(result)
    else:
        _print_training_summary(result, summaries)


def _train_candidate(request, source: str, name: str, sandbox_name, timeout, quiet: bool):
    """A candidate's training, in the sandbox only; its verdict ends the command (exit 1),
    and so does a missing sandbox (exit 2)."""
    from harness.backends import SandboxUnavailable
    from harness.train import TrainingFailed, train_in_sandbox
    from scientist.executors.base import gpu_present

    def train():
        return train_in_sandbox(
            request,
            source,
            filename=name,
            sandbox=sandbox_name,
            seconds=timeout,
            gpu=gpu_present(),
        )

    try:
        if quiet:
            return train()
        with console.status(f"training {name} in the sandbox ({request.env})"):
            return train()
    except SandboxUnavailable as error:  # never trained in this process instead
        console.print(f"[red]sandbox unavailable:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(2) from None
    except TrainingFailed as error:
        label = {
            Status.REJECTED: "candidate rejected",
            Status.INVALID: "candidate broke its contract",
            Status.TIMEOUT: "rejected",
        }.get(error.status, "failed")
        console.print(f"[red]{label}:[/red] {escape(_printable(str(error)))}", highlight=False)
        raise typer.Exit(1) from None


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
    seeds: Annotated[int, count_option("PPO seeds per environment.", high=MAX_AT_ONCE)] = 16,
    seed: Annotated[int, seed_option("Training seed.")] = 12345,
    json_output: Annotated[bool, typer.Option("--json")] = False,
):
    """Measure the random-policy and PPO reference returns that normalise scores at a budget."""
    import dataclasses

    from sandbox.budgets import get_budget
    from sandbox.fitness import interquartile_mean
    from sandbox.training.evaluate import random_policy_return
    from sandbox.training.run import evaluate_batch, train_batch

    chosen = get_budget(budget)
    rows = {}
    for env_id in env or chosen.env_ids:
        config = chosen.config(env_id)
        # The random policy's return is cheap to pin down precisely: many more episodes.
        random_config = dataclasses.replace(config, eval_episodes=RANDOM_POLICY_EPISODES)
        random_return = random_policy_return(random_config, eval_seed=seed + 1)
        batch = train_batch(config, seeds=seeds, seed=seed)
        ppo_returns = evaluate_batch(batch, eval_seed=seed + 2)[0]
        rows[env_id] = {
            "random_return": random_return,
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
    sandbox_name: SandboxOption = Sandbox.AUTO,
    timeout: Annotated[
        float,
        typer.Option(min=1.0, help="Seconds the sandboxed check may take; then it is rejected."),
    ] = 300.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Check a candidate without training it: static rules here, then, in the sandbox under
    a time limit, loading, contract and validity conditions. Exit 0 when valid, 1 when
    invalid, rejected or out of time, 2 for a usage error or when no sandbox can run."""
    from harness.backends import SandboxUnavailable
    from harness.check import check_in_sandbox
    from sandbox.tasks import TaskError, load_task

    try:
        spec = load_task(task)
    except TaskError as error:
        raise typer.BadParameter(str(error), param_hint="--task") from None
    source = read_candidate(file, "FILE")
    try:
        checked = check_in_sandbox(
            spec.name, source, filename=str(file), sandbox=sandbox_name, seconds=timeout
        )
    except SandboxUnavailable as error:  # never checked in this process instead
        console.print(f"[red]sandbox unavailable:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(2) from None
    report = checked.report
    if json_output:
        print_json(report.to_dict())
        if checked.headline:
            console.print(escape(checked.headline), highlight=False)
    else:
        _print_check(checked, spec.name, file)
    raise typer.Exit(0 if report.valid else 1)


def _print_check(checked, task: str, file: Path) -> None:
    out = Console()
    for result in checked.report.checks:  # details may quote the candidate: no markup in them
        mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
        proof = ""
        if result.proof:
            p = result.proof
            proof = f" [certificate: {p['verdict']}, {p['boxes']} boxes: {p['detail']}]"
        text = _printable(f"{result.name}: {result.detail}{proof}")
        out.print(f"{mark} {escape(text)}", highlight=False)
    report, where = checked.report, escape(str(file))
    if checked.headline:  # no verdict from the checks themselves: how the run ended is one
        headline = escape(_printable(checked.headline))
        out.print(f"[bold red]{headline}[/bold red]; {task} candidate: {where}", highlight=False)
        return
    label = f"valid ({report.assurance})" if report.valid else "invalid"
    out.print(f"[bold]{label}[/bold] {task} candidate: {where}", highlight=False)


def _printable(text: str) -> str:
    """Text for a terminal: control characters (escape sequences included) shown as '?'."""
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in text)


@app.command()
def evaluate(
    files: Annotated[
        list[Path], typer.Argument(help="Candidate modules to evaluate, as one batch.")
    ],
    task: Annotated[str, typer.Option(help="Task the candidates are for.")] = "mirror_drift",
    budget: Annotated[str, typer.Option(help=f"{BUDGET_NAMES}.")] = "smoke",
    sandbox_name: SandboxOption = Sandbox.AUTO,
    seed: Annotated[int, seed_option("Training seed.")] = 0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per file, one per line.")
    ] = False,
):
    """Evaluate untrusted candidates: static checks, then trace, validity, trial and full
    runs in the sandbox, then the trusted scorer. Several files run as one batch, as in a
    campaign (one sandbox run, one compile), each with the verdict it gets alone. Exit 0
    when every status is ok, 2 when any is infra (no sandbox could run it: the sandbox
    itself failed), else 1."""
    from harness.backends import SandboxUnavailable
    from harness.cascade import evaluate_batch
    from sandbox.budgets import get_budget
    from sandbox.tasks import TaskError, load_task

    try:
        load_task(task).split(get_budget(budget).name)
    except (TaskError, KeyError) as error:
        raise typer.BadParameter(error.args[0]) from None
    sources = [read_candidate(file, "FILES") for file in files]  # every one, before any runs
    what = files[0] if len(files) == 1 else f"{len(files)} candidates"
    try:
        if json_output:
            results = evaluate_batch(task, sources, budget, sandbox=sandbox_name, seed=seed)
        else:
            with console.status(f"evaluating {what} ({task}, {budget} budget)"):
                results = evaluate_batch(task, sources, budget, sandbox=sandbox_name, seed=seed)
    except SandboxUnavailable as error:
        console.print(f"[red]sandbox unavailable:[/red] {error}")
        raise typer.Exit(2) from None
    for file, result in zip(files, results, strict=True):
        if json_output:
            print_json({"file": str(file), **result.to_dict()})
        else:
            _print_evaluation(result, title=str(file) if len(files) > 1 else None)
    statuses = {result.status for result in results}
    raise typer.Exit(2 if Status.INFRA in statuses else 0 if statuses == {Status.OK} else 1)


def _print_evaluation(result, title: str | None = None) -> None:
    out = Console()
    if title is not None:  # one of several: say whose stages follow
        out.rule(escape(title), align="left")
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
