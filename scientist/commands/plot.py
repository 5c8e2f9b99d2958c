"""`scientist plot drift ID|FILE --out FILE.png`: a drift's landscape, features and figure."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sandbox.vocabulary import Sandbox
from scientist.commands.json_output import print_json
from scientist.commands.options import MAX_ID, DbOption, SandboxOption, console, out
from scientist.commands.sources import is_file, read_candidate

app = typer.Typer(no_args_is_help=True, help="Figures of candidates.")

DRIFT_TASK = "mirror_drift"


@app.command()
def drift(
    target: Annotated[
        str,
        typer.Argument(metavar="ID|FILE", help="archive candidate id, or a .py drift candidate"),
    ],
    png: Annotated[
        Path,
        typer.Option("--out", dir_okay=False, help="where to write the PNG figure (replaced)"),
    ],
    db: DbOption = None,
    sandbox: SandboxOption = Sandbox.AUTO,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object with the numbers")
    ] = False,
) -> None:
    """Heat map and slices of d(r*A - drift)/dr, and the drift's features (rollback,
    cautious optimism, asymmetry, drift-free region). The candidate runs in the sandbox."""
    from harness.backends import SandboxUnavailable
    from harness.landscape import compute_landscape
    from sandbox.landscape import LandscapeError
    from scientist.analysis import detect_features
    from scientist.plots import save_drift_plot

    task, source, label, candidate_id = _resolve(target, db)
    try:
        landscape = compute_landscape(task, source, sandbox)
    except LandscapeError as error:
        console.print(f"[red]no landscape for {label}:[/red] {error}")
        raise typer.Exit(1) from None
    except SandboxUnavailable as error:
        console.print(f"[red]sandbox unavailable:[/red] {error}")
        raise typer.Exit(2) from None
    features = detect_features(landscape)
    sentences = features.describe()
    try:
        save_drift_plot(landscape, png, sentences=sentences, title=f"{label}: {task}")
    except OSError as error:  # a folder in the way, no permission, a full disk
        console.print(f"[red]cannot write {escape(str(png))}:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    if as_json:
        record = {
            "candidate": candidate_id,
            "file": None if candidate_id is not None else target,
            "task": task,
            "png": str(png),
            "features": features.to_dict(),
            "sentences": sentences,
        }
        print_json(record)
        return
    for sentence in sentences:
        out.print(sentence, highlight=False, soft_wrap=True)
    console.print(f"wrote {png}")


def _resolve(target: str, db: str | None) -> tuple[str, str, str, int | None]:
    """(task, source, label, candidate id) from a file path or an archive id."""
    path = Path(target)
    if is_file(path):
        return DRIFT_TASK, read_candidate(path, "ID|FILE"), path.name, None
    candidate_id = _candidate_id(target)
    if candidate_id is None:
        raise typer.BadParameter(
            f"{target!r} is neither a file nor a candidate id (1 to {MAX_ID})",
            param_hint="ID|FILE",
        )
    from archive import reads
    from archive.db import open_reader, transaction

    with transaction(open_reader(db)) as session:
        candidate = reads.candidate(session, candidate_id)
    if candidate is None:
        console.print(f"[red]no candidate {target} in this archive")
        raise typer.Exit(2)
    if not candidate.code:
        console.print(f"[red]candidate {target} has no code")
        raise typer.Exit(2)
    return candidate.task, candidate.code, f"candidate #{candidate.id}", candidate.id


def _candidate_id(target: str) -> int | None:
    """The archive id `target` spells in ASCII digits ('²' is a digit to str.isdigit, and
    int() refuses thousands of them), 1 to MAX_ID; None for anything else."""
    if not (target.isascii() and target.isdigit()) or len(target) > len(str(MAX_ID)):
        return None
    number = int(target)
    return number if 1 <= number <= MAX_ID else None
