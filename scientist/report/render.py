"""The report as HTML (one self-contained file), Markdown (with a figures/ folder) and PDF
(WeasyPrint from the HTML, offline: fonts and Pango come from Debian packages)."""

import base64
import functools
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from sandbox.fitness import MIN_SEEDS_PER_ENV, MIN_VALUES
from sandbox.vocabulary import Status
from scientist.compare import Cost, Score
from scientist.report.data import Entry, ReportData
from scientist.report.figures import DriftPanel

FORMATS = ("html", "pdf", "md")
FIGURE_DIR = "figures"


@dataclass
class Figures:
    fitness: bytes | None = None
    curves: bytes | None = None
    drifts: list[DriftPanel] = field(default_factory=list)
    formulas: dict[int, bytes] = field(default_factory=dict)  # candidate id -> SVG


@dataclass(frozen=True)
class Narrative:
    paragraphs: tuple[str, ...]
    model: str
    dropped: int = 0  # sentences removed because they cited numbers not in the data
    cost_usd: float = 0.0


def num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def score(s: Score) -> str:
    return "–" if s.estimate is None else s.estimate.describe(3)


def versus(e: Entry) -> str:
    """The paired difference from PPO, with the label it earned."""
    found = next((text for baseline, text in e.versus if baseline == "ppo"), "")
    return found.removeprefix("vs PPO ") + (" — beats PPO" if "beats PPO" in e.labels else "")


def standing(e: Entry) -> str:
    """Where a discovered candidate stands against the baselines, in one sentence."""
    if e.held:
        return "It is waiting for its re-evaluation on fresh seeds: not a discovery yet."
    paired = "; ".join(text for _, text in e.versus)
    earned = f" It {' and '.join(e.labels)}." if e.labels else " It beats neither baseline."
    return (f"Paired with the baselines on the same seeds: {paired}." if paired else "") + earned


def cost(c: Cost) -> str:
    return (
        f"{c.training_runs:,} training runs, {c.env_steps:,} env steps, "
        f"{c.wall_seconds / 60:.1f} sandbox-min, ${c.dollars:.4f}"
    )


def title(data: ReportData) -> str:
    return (
        f"Discovered {data.method.piece.replace('_', ' ')} functions for {data.method.task}: "
        f"campaign {data.campaign}"
    )


def abstract(data: ReportData) -> str:
    """The abstract, in words, every number from the data."""
    m = data.method
    models = f" ({', '.join(m.models)})" if m.models else ""
    parts = [
        f"We searched for {m.piece.replace('_', ' ')} functions on the {m.task} task with the "
        f"{m.proposer} proposer{models}, evaluating {data.evaluated} candidates at the "
        f"{m.budget} budget ({m.seeds} seeds per environment); "
        f"{data.counts.get(Status.OK, 0)} passed every stage."
    ]
    best = data.best
    if best is None:
        parts.append("No proposed candidate scored, so nothing was discovered.")
    else:
        parts.append(
            f"The best discovered candidate, {best.label}, reached a normalised IQM of "
            f"{score(best.meta_train)} on the meta-training environments "
            f"({', '.join(m.meta_train)}) and {score(best.meta_test)} on the held-out ones "
            f"({', '.join(m.meta_test)})."
        )
    if data.baselines:
        parts.append(
            "In the same campaign "
            + "; ".join(
                f"{b.label} scored {score(b.meta_train)} and {score(b.meta_test)}"
                for b in data.baselines
            )
            + "."
        )
    parts.append(f"The search cost {cost(data.cost)}.")
    es = [r for r in data.comparison if r.label.startswith("ES")]
    if es:
        parts.append(
            f"The evolution-strategies baseline's best candidate (#{es[0].candidate_id}) scored "
            f"{num(es[0].search_fitness)} in its search and {score(es[0].meta_test)} held out."
        )
    return " ".join(parts)


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("scientist.report", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.globals.update(
        num=num,
        score=score,
        cost=cost,
        versus=versus,
        standing=standing,
        min_seeds=MIN_SEEDS_PER_ENV,
        min_values=MIN_VALUES,
    )
    return env


def _context(data: ReportData, figures: Figures, narrative: Narrative | None) -> dict:
    return {
        "d": data,
        "figures": figures,
        "narrative": narrative,
        "title": title(data),
        "abstract": abstract(data),
    }


def render_html(data: ReportData, figures: Figures, narrative: Narrative | None = None) -> str:
    formatter = HtmlFormatter(noclasses=True, nowrap=True)

    def code(source: str) -> Markup:
        return Markup(highlight(source, PythonLexer(), formatter))  # pygments escapes the source

    png = functools.partial(_data_uri, "image/png")
    svg = functools.partial(_data_uri, "image/svg+xml")
    return (
        _templates()
        .get_template("report.html.j2")
        .render(**_context(data, figures, narrative), code=code, png=png, svg=svg)
    )


def _data_uri(media_type: str, content: bytes) -> str:
    """A figure inside the one HTML file (and so inside the PDF)."""
    return f"data:{media_type};base64,{base64.b64encode(content).decode()}"


def render_markdown(
    data: ReportData, figures: Figures, narrative: Narrative | None = None
) -> tuple[str, dict[str, bytes]]:
    """The Markdown text and the figure files it links to (relative to the report)."""
    files: dict[str, bytes] = {}

    def png(data_bytes: bytes, name: str) -> str:
        files[f"{FIGURE_DIR}/{name}"] = data_bytes
        return f"{FIGURE_DIR}/{name}"

    text = (
        _templates()
        .get_template("report.md.j2")
        .render(**_context(data, figures, narrative), png=png)
    )
    return text, files


def render_pdf(html: str) -> bytes:
    try:
        import weasyprint
    except OSError as error:  # the Python package is there, Pango is not
        raise RuntimeError(
            f"WeasyPrint cannot load its system libraries ({error}); install Debian's "
            "libpango-1.0-0 and libpangoft2-1.0-0 (scripts/install-system-deps.sh)"
        ) from None
    return weasyprint.HTML(string=html).write_pdf()


def write_report(
    data: ReportData,
    figures: Figures,
    out: Path,
    formats: tuple[str, ...],
    narrative: Narrative | None = None,
) -> dict[str, Path]:
    """Write the chosen formats into `out`; returns format -> file."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    stem = f"report-{data.campaign}"
    html = render_html(data, figures, narrative) if {"html", "pdf"} & set(formats) else None
    if "html" in formats:
        written["html"] = _write(out / f"{stem}.html", html.encode())
    if "md" in formats:
        text, files = render_markdown(data, figures, narrative)
        for name, content in files.items():
            _write(out / name, content)
        written["md"] = _write(out / f"{stem}.md", text.encode())
    if "pdf" in formats:
        written["pdf"] = _write(out / f"{stem}.pdf", render_pdf(html))
    return written


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    temporary.replace(path)
    return path
