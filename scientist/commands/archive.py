"""`scientist archive list | show | diff`: reading the archive; `upgrade`: migrating it."""

import difflib
import json
import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from archive import reads
from archive.db import current_revision, open_engine, open_reader, transaction, where
from archive.schema import Candidate
from sandbox.fitness import Estimate
from sandbox.vocabulary import Fidelity, Status
from scientist.campaign.display import fmt, leaderboard_table
from scientist.commands.options import (
    CandidateId,
    DbOption,
    campaign_or_exit,
    console,
    count_option,
    out,
)
from scientist.commands.stored import candidate_in_shape
from scientist.search.paired import versus_baselines
from scientist.search.views import failure_summary

app = typer.Typer(no_args_is_help=True, help="Browse a campaign's archive.")
# ids `show` lists at most (far beyond any real lineage; parent links could form a loop)
LINEAGE_LIMIT = 100_000


def candidate_record(c: Candidate, lineage: list[int] | None = None) -> dict:
    return {
        "id": c.id,
        "status": c.status,
        "fitness": c.fitness,
        "meta_test_fitness": c.meta_test_fitness,
        "origin": c.origin,
        "operator": c.operator,
        "baseline": c.baseline_name,
        "generation": c.generation,
        "island": c.island,
        "parent_id": c.parent_id,
        "inspiration_ids": c.inspiration_ids,
        "duplicate_of": c.duplicate_of,
        "model": c.model,
        "cost_usd": c.cost_usd,
        "tokens": {"prompt": c.prompt_tokens, "completion": c.completion_tokens},
        "note": c.proposal_note,
        "code_hash": c.code_hash,
        "signature": c.signature,
        "eval_seconds": c.eval_seconds,
        **({"lineage": lineage} if lineage is not None else {}),
    }


@app.command()
def upgrade(db: DbOption = None) -> None:
    """Migrate the archive to this version's schema (commands that only read never do)."""
    engine = open_engine(db, create=False)
    out.print(f"archive {where(engine.url)}: schema revision {current_revision(engine)}")


@app.command("list")
def list_(
    name: Annotated[str, typer.Argument()],
    db: DbOption = None,
    top: Annotated[Optional[int], count_option("only the best K scored candidates")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout")] = False,
) -> None:
    """Every candidate of a campaign (or the best K scored ones)."""
    engine = open_reader(db)
    with transaction(engine) as session:
        campaign = campaign_or_exit(session, name)
        rows = (
            reads.leaderboard(session, campaign.id, top)
            if top
            else reads.candidates(session, campaign.id)
        )
        paired = versus_baselines(session, rows) if top else {}
    if as_json:
        for c in rows:
            sys.stdout.write(json.dumps(candidate_record(c)) + "\n")
        return
    if top:
        out.print(leaderboard_table(rows, f"{name}: best {top}", paired))
        return
    table = Table(title=f"{name}: {len(rows)} candidates", title_justify="left")
    for column in (
        "id",
        "gen",
        "island",
        "origin",
        "op",
        "status",
        "fitness",
        "meta-test",
        "parent",
        "note",
    ):
        table.add_column(column)
    for c in rows:
        table.add_row(
            str(c.id),
            str(c.generation),
            str(c.island),
            c.origin,
            c.operator,
            c.status,
            fmt(c.fitness),
            fmt(c.meta_test_fitness),
            str(c.parent_id or c.duplicate_of or ""),
            c.baseline_name or c.proposal_note[:50],
        )
    out.print(table)


def _get(session, candidate_id: int) -> Candidate:
    candidate = reads.candidate(session, candidate_id)
    if candidate is None:
        console.print(f"[red]no candidate {candidate_id} in this archive")
        raise typer.Exit(2)
    return candidate


@app.command()
def show(
    candidate_id: CandidateId,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A candidate's code, lineage, check results and scores."""
    engine = open_reader(db)
    with transaction(engine) as session:
        c = _get(session, candidate_id)
        chain = reads.lineage(session, c.id, LINEAGE_LIMIT)
        calls = reads.calls_of(session, c.id)
    if as_json:
        record = {
            **candidate_record(c, chain),
            "code": c.code,
            "stages": c.stages,
            "checks": c.checks,
            "per_env": c.per_env,
            "calls": [
                {"model": k.model, "attempts": k.attempts, "error": k.error, "cost_usd": k.cost_usd}
                for k in calls
            ],
        }
        sys.stdout.write(json.dumps(record) + "\n")
        return
    c, notes = candidate_in_shape(c)
    for note in notes:
        console.print(f"[red]{escape(note)}", soft_wrap=True)
    meta_test = (
        "meta-test not trained: screened"
        if c.fidelity == Fidelity.SCREEN
        else f"meta-test {fmt(c.meta_test_fitness)}"
    )
    out.rule(f"candidate {c.id}: {c.status}, fitness {fmt(c.fitness)} ({meta_test})")
    out.print(
        f"origin {c.origin} ({c.operator}), generation {c.generation}, island {c.island}"
        + (f", model {c.model}" if c.model else "")
        + (f", ${c.cost_usd:.4f}" if c.cost_usd else "")
    )
    out.print(
        "lineage: "
        + " ← ".join(f"#{i}" for i in chain)
        + (f"; inspirations {c.inspiration_ids}" if c.inspiration_ids else "")
        + (f"; duplicate of #{c.duplicate_of}" if c.duplicate_of else "")
    )
    if c.proposal_note:
        out.print(f"note: {c.proposal_note}")
    if c.code:
        out.print(Syntax(c.code, "python", line_numbers=True))
    for stage in c.stages:
        out.print(
            f"  {stage['name']:<9} {stage['status']:<10} {stage['seconds']:7.1f} s  "
            f"{stage.get('detail', '')[:200]}"
        )
    if c.status not in (Status.OK, Status.PENDING):
        out.print(f"[red]{failure_summary(c)}")
    for split, envs in (c.per_env or {}).items():
        for env_id, result in envs.items():
            estimate = Estimate.of_entry(result.get("normalised", {}))
            out.print(
                f"  {split:<10} {env_id:<22} normalised IQM {estimate.describe()}  "
                f"return IQM {fmt(result.get('return_iqm'), 2)}"
            )
    for call in calls:
        out.print(
            f"  call {call.model}: {call.attempts} attempt(s), "
            f"{call.prompt_tokens}+{call.completion_tokens} "
            f"tokens, ${call.cost_usd:.4f}" + (f", error: {call.error[:200]}" if call.error else "")
        )


@app.command()
def diff(
    first: CandidateId,
    second: CandidateId,
    db: DbOption = None,
) -> None:
    """A unified diff of two candidates' code, with their scores."""
    engine = open_reader(db)
    with transaction(engine) as session:
        a, b = _get(session, first), _get(session, second)
    out.print(
        f"#{a.id} {a.status} fitness {fmt(a.fitness)}  →  "
        f"#{b.id} {b.status} fitness {fmt(b.fitness)}"
    )
    text = "".join(
        difflib.unified_diff(
            (a.code or "").splitlines(True),
            (b.code or "").splitlines(True),
            f"candidate {a.id}",
            f"candidate {b.id}",
        )
    )
    out.print(Syntax(text or "(identical code)\n", "diff"))
