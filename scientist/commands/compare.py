"""`scientist compare NAME...`: LLM vs mutation vs ES vs PPO/DPO on fresh seeds."""

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from archive import reads
from archive.db import open_reader, transaction
from sandbox.budgets import get_budget
from sandbox.vocabulary import ExecutorName, Sandbox, Status
from scientist.campaign.display import fmt
from scientist.commands.options import (
    MAX_AT_ONCE,
    DbOption,
    ExecutorOption,
    RayAddressOption,
    SandboxOption,
    console,
    count_option,
    executor_for,
    out,
    seed_option,
)
from scientist.compare import CompareError, Row, gather, reevaluate


def compare(
    names: Annotated[
        list[str], typer.Argument(help="campaigns whose best candidates are compared")
    ],
    budget: Annotated[
        Optional[str],
        typer.Option(help="shared budget (default: the campaigns' own, if they agree)"),
    ] = None,
    seed: Annotated[
        int, seed_option("training seed of the re-evaluation (fresh: not a campaign's)")
    ] = 1009,
    blocks: Annotated[
        int,
        count_option(
            "blocks of the budget's seeds to train each row on, in one run (smoke: 4 "
            "blocks are 8 seeds, the fewest with an interval)",
            high=MAX_AT_ONCE,
        ),
    ] = 1,
    sandbox: SandboxOption = Sandbox.AUTO,
    workers: Annotated[
        int, count_option("evaluations at once (with ray: tasks in flight)", high=MAX_AT_ONCE)
    ] = 2,
    executor: ExecutorOption = ExecutorName.LOCAL,
    ray_address: RayAddressOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="the table as JSON on stdout")] = False,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out", file_okay=False, help="write comparison.json and comparison.md here (replaced)"
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Re-train the best candidate of each origin and the PPO/DPO baselines on fresh seeds at one
    budget; report meta-train and held-out meta-test fitness with 95% CIs, and search costs."""
    engine = open_reader(db)
    try:
        with transaction(engine) as session:
            task, campaigns, rows = gather(session, names)
    except (reads.CampaignNotFound, CompareError) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(2) from None
    budgets = {c.budget for c in campaigns}
    if budget is None and len(budgets) > 1:
        console.print(
            f"[red]the campaigns ran at different budgets ({', '.join(sorted(budgets))}); "
            "choose one with --budget"
        )
        raise typer.Exit(2)
    budget = budget or budgets.pop()
    seeds = blocks * get_budget(budget).seeds
    console.print(
        f"re-evaluating {sum(r.code is not None for r in rows)} candidates on {task} "
        f"at budget {budget}, {seeds} seeds from seed {seed} ..."
    )
    with executor_for(executor, ray_address) as runs:
        reevaluate(
            task,
            rows,
            budget,
            seed=seed,
            sandbox=sandbox,
            workers=workers,
            executor=runs,
            blocks=blocks,
            on_done=lambda r: console.print(f"  {r.label}: {r.status}"),
        )
    record = {
        "task": task,
        "budget": budget,
        "seed": seed,
        "blocks": blocks,
        "seeds": seeds,
        "campaigns": names,
        "rows": [{k: v for k, v in asdict(r).items() if k != "code"} for r in rows],
    }
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
    else:
        out.print(table(rows, f"{task} at {budget}, {seeds} fresh seeds from seed {seed}"))
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "comparison.json").write_text(json.dumps(record, indent=2))
            (out_dir / "comparison.md").write_text(markdown(rows, task, budget, seed, seeds))
        except OSError as error:  # the table above is already printed
            console.print(f"[red]cannot write {out_dir}:[/red] {escape(str(error))}")
            raise typer.Exit(1) from None
        console.print(f"wrote {out_dir / 'comparison.json'} and {out_dir / 'comparison.md'}")


def _score(score, status: str) -> str:
    if status != Status.OK:
        # missing (nothing of this origin in the campaigns) or the re-evaluation's failure
        return status
    return score.estimate.describe(3) if score.estimate else "—"


def _cost(row: Row) -> list[str]:
    if row.cost is None:
        return ["—", "", "", ""]
    c = row.cost
    return [
        str(c.training_runs),
        f"{c.env_steps:.1e}",
        f"{c.wall_seconds / 60:.1f}",
        f"{c.dollars:.2f}",
    ]


COLUMNS = (
    "method",
    "id",
    "meta-train (CI)",
    "meta-test (CI)",
    "vs PPO (paired)",
    "search",
    "runs",
    "steps",
    "min",
    "$",
)


def _cells(r: Row) -> list[str]:
    return [
        r.label,
        str(r.candidate_id or ""),
        _score(r.meta_train, r.status),
        _score(r.meta_test, r.status),
        ""
        if r.versus_ppo is None
        else f"{r.versus_ppo.point:+.3f} {r.versus_ppo.interval_text(2)}",
        fmt(r.search_fitness),
        *_cost(r),
    ]


def table(rows: list[Row], title: str) -> Table:
    t = Table(
        title=title,
        title_justify="left",
        caption="fitness: 0 = random policy, 1 = PPO; IQM over seeds, "
        "mean over envs, 95% CI where the seeds allow one; search = score during the search; "
        "costs = the whole search's "
        "(none for the hand-designed PPO and DPO)",
        caption_justify="left",
    )
    for column in COLUMNS:
        t.add_column(column, no_wrap=True)
    for r in rows:
        t.add_row(*_cells(r))
    return t


def markdown(rows: list[Row], task: str, budget: str, seed: int, seeds: int) -> str:
    lines = [
        f"# {task}: comparison at budget {budget} ({seeds} fresh seeds from training seed {seed})",
        "",
        "Normalised fitness: 0 = uniform-random policy, 1 = PPO at this budget. IQM over seeds, "
        "mean over environments, 95% stratified bootstrap CI (none below 4 seeds per environment "
        "and 8 in all, where its coverage is unchecked). *search* is the score the search "
        "itself measured; costs (training runs, environment steps, sandbox minutes, dollars) are "
        "the whole search's.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"
