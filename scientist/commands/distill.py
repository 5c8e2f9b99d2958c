"""`scientist distill ID --model M`: a learned drift (e.g. an ES network) -> a closed form,
scored."""

from typing import Annotated, Optional

import typer
from rich.table import Table

from sandbox.budgets import BUDGET_NAMES
from sandbox.vocabulary import ExecutorName, Sandbox, Status
from scientist.commands.json_output import print_json
from scientist.commands.options import (
    MAX_ID,
    DbOption,
    ExecutorOption,
    RayAddressOption,
    SandboxOption,
    console,
    count_option,
    engine_for,
    executor_for,
    out,
    seed_option,
)
from scientist.commands.reporting import exit_on


def distill(
    candidate: Annotated[
        int,
        typer.Argument(
            metavar="ID",
            min=1,
            max=MAX_ID,
            help="archive id of the drift to distil (e.g. an ES mean network)",
        ),
    ],
    model: Annotated[
        list[str], typer.Option("--model", help="litellm model; repeat to let models take turns")
    ],
    api_base: Annotated[
        Optional[str], typer.Option(help="OpenAI-compatible base URL (key in $SCIENTIST_API_KEY)")
    ] = None,
    budget: Annotated[
        Optional[str], typer.Option(help=f"{BUDGET_NAMES} (default: the campaign's)")
    ] = None,
    sandbox: SandboxOption = Sandbox.AUTO,
    attempts: Annotated[int, count_option("model replies at most, each checked and fed back")] = 3,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="relative RMSE of the drift that counts as a fit")
    ] = 0.05,
    timeout: Annotated[float, typer.Option(min=1.0, help="seconds per model request")] = 120.0,
    price_in: Annotated[
        Optional[float],
        typer.Option(min=0.0, help="USD per million input tokens, for unpriced models"),
    ] = None,
    price_out: Annotated[
        Optional[float],
        typer.Option(min=0.0, help="USD per million output tokens, for unpriced models"),
    ] = None,
    seed: Annotated[int, seed_option("training seed of the evaluation")] = 0,
    executor: ExecutorOption = ExecutorName.LOCAL,
    ray_address: RayAddressOption = None,
    db: DbOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of tables")
    ] = False,
) -> None:
    """Ask a model for a short closed-form drift that reproduces a learned one (sampled in the
    sandbox), with the fit fed back until it is close, then archive the closed form beside
    its source (origin distilled) and score it like any candidate. Exit 0 when it scored ok."""
    from harness.backends import SandboxUnavailable
    from scientist.distill import DistillError
    from scientist.distill import distill as run_distill
    from scientist.proposers.llm import environment_api_key

    if (price_in is None) != (price_out is None):
        raise typer.BadParameter("give both --price-in and --price-out, or neither")
    if tolerance <= 0:
        raise typer.BadParameter("the tolerance must be above 0", param_hint="--tolerance")
    price = (price_in, price_out) if price_in is not None else None
    engine = engine_for(db, create=False)
    status = console.status("starting")
    if not as_json:
        status.start()

    def on_attempt(attempt) -> None:
        if not as_json:
            colour = "green" if attempt.outcome == "accepted" else "yellow"
            console.print(
                f"attempt {attempt.number} ({attempt.model}): "
                f"[{colour}]{attempt.outcome}[/{colour}] "
                f"{attempt.detail[:200]}" + "".join(f"\n  {v}" for v in attempt.violations),
                highlight=False,
            )

    with (
        exit_on(
            status,
            (
                (DistillError, 2, f"cannot distil candidate {candidate}"),
                (SandboxUnavailable, 2, "sandbox unavailable"),
            ),
            "interrupted; the calls made so far are in the archive",
        ),
        executor_for(executor, ray_address) as runs,
    ):
        result = run_distill(
            engine,
            candidate,
            models=model,
            api_base=api_base,
            api_key=environment_api_key(),
            budget=budget,
            sandbox=sandbox,
            seed=seed,
            attempts=attempts,
            tolerance=tolerance,
            timeout=timeout,
            price_per_million=price,
            on_attempt=on_attempt,
            on_phase=status.update,
            executor=runs,
        )
    if as_json:
        print_json(result.to_dict())
    else:
        _show(result)
    raise typer.Exit(0 if result.status == Status.OK else 1)


def _show(result) -> None:
    out.print("learned drift:", highlight=False)
    for sentence in result.source_features:
        out.print(f"  {sentence}", highlight=False, soft_wrap=True)
    if result.fit:
        table = Table(
            title=(
                f"fit of the closed form (attempt {result.kept_attempt}) "
                f"to candidate {result.source_id}"
            ),
            title_justify="left",
        )
        for column in ("", "RMSE", "relative RMSE", "R²", "largest error"):
            table.add_column(column, justify="right")
        f = result.fit
        table.add_row(
            "D(r, A)",
            _num(f["drift_rmse"]),
            _num(f["drift_relative_rmse"]),
            _num(f["drift_r2"]),
            _num(f["drift_max_error"]),
        )
        table.add_row(
            "dJ/dr", _num(f["slope_rmse"]), _num(f["slope_relative_rmse"]), _num(f["slope_r2"]), ""
        )
        out.print(table)
        ignored = f["target_nan_cells"] + f["candidate_nan_cells"]
        if ignored:
            out.print(f"{ignored} NaN cells of {f['cells']} left out", highlight=False)
        if not result.within_tolerance:
            out.print(
                "[yellow]no reply met the tolerance and the grid conditions; "
                "this is the closest one",
                highlight=False,
            )
    for stage in result.stages:
        mark = (
            "[green]ok[/green]" if stage["status"] == Status.OK else f"[red]{stage['status']}[/red]"
        )
        out.print(
            f"{stage['name']:>9} {mark} {stage['seconds']:6.1f} s  {stage['detail'][:160]}",
            highlight=False,
        )
    fitness = "–" if result.fitness is None else f"{result.fitness:.3f}"
    test = "–" if result.meta_test_fitness is None else f"{result.meta_test_fitness:.3f}"
    duplicate = f" of #{result.duplicate_of}" if result.duplicate_of is not None else ""
    out.print(
        f"[bold]candidate #{result.candidate_id}[/bold] "
        f"(distilled from #{result.source_id}, campaign "
        f"{result.campaign}): {result.status}{duplicate} · fitness {fitness} · meta-test {test} · "
        f"${result.cost_usd:.4f} over {len(result.attempts)} call(s)",
        highlight=False,
    )
    if result.stopped:
        out.print(f"[yellow]stopped early:[/yellow] {result.stopped}", highlight=False)


def _num(value) -> str:
    return "–" if value is None else f"{value:.4g}"
