"""From archive to report files: collect, draw, (optionally) narrate, write."""

from collections.abc import Callable
from pathlib import Path

from archive.db import reading
from sandbox.vocabulary import Sandbox
from scientist.report.data import collect
from scientist.report.figures import curves_figure, drift_panels, fitness_figure, formula_figures
from scientist.report.render import Figures, Narrative, render_markdown, write_report


def build_report(
    engine,
    name: str,
    out: Path,
    *,
    formats: tuple[str, ...] = ("html", "pdf"),
    against: list[str] | None = None,
    landscape_cache=None,
    compute_landscapes: bool = True,
    sandbox: str = Sandbox.AUTO,
    narrator: Callable[[str], Narrative] | None = None,
) -> dict[str, Path]:
    """Write campaign `name`'s report into `out` in `formats`; returns format -> file.
    `narrator` turns the report's text into a Narrative (see narrative.write_narrative).
    Raises data.ReportError for an unknown campaign or a comparison across tasks."""
    with reading(engine) as session:
        data = collect(session, name, against)
    figures = Figures(fitness_figure(data), curves_figure(data), formulas=formula_figures(data))
    if landscape_cache is not None:
        figures.drifts = drift_panels(
            data, landscape_cache, compute=compute_landscapes, sandbox=sandbox
        )
    narrative = narrator(render_markdown(data, Figures())[0]) if narrator else None
    return write_report(data, figures, Path(out), formats, narrative)
