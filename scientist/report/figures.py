"""The report's figures as PNG bytes (matplotlib, Agg, no metadata: the same data gives the
same bytes), and the discovered formulas as SVG (matplotlib's mathtext: no TeX installation,
and WeasyPrint draws SVG where it cannot draw MathML). Drift heatmaps come from landscapes
the sandbox computed, through the web browser's cache, so a report never runs candidate
code in this process."""

import io
import re
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.mathtext import MathTextParser
from matplotlib.ticker import MaxNLocator

from sandbox.vocabulary import Sandbox
from scientist.report.data import Entry, ReportData

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DPI = 100
FORMULA_FONT = {"size": 14, "math_fontfamily": "cm"}  # Computer Modern, as LaTeX sets it
# Glyphs as paths (no font needed to view it); fixed ids: the same formula, the same bytes.
FORMULA_SVG = {"svg.fonttype": "path", "svg.hashsalt": "formula"}
REFERENCE_DRIFTS = (
    "PPO",
    "DPO",
)  # the hand-designed landscapes worth drawing beside the discoveries


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def fitness_figure(data: ReportData) -> bytes | None:
    """Best and median fitness per generation, the best so far, the baselines' levels, and
    ES campaigns' best member per generation."""
    points = [p for p in data.generations if p.best is not None]
    if not points:
        return None
    figure = Figure(figsize=(8, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    generations = [p.generation for p in points]
    axis.plot(
        generations,
        [p.best_so_far for p in points],
        color=COLOURS[0],
        label="best so far",
        linewidth=2,
    )
    axis.plot(
        generations, [p.best for p in points], "o", color=COLOURS[0], label="best of generation"
    )
    axis.plot(
        generations, [p.median for p in points], "s--", color="0.5", label="median of generation"
    )
    for k, run in enumerate(data.es_runs):
        axis.plot(
            [g for g, _, _ in run.generations],
            [b for _, b, _ in run.generations],
            "^-",
            color=COLOURS[2 + k % 5],
            label=f"ES {run.campaign}: best member",
        )
    for k, baseline in enumerate(data.baselines):
        axis.axhline(
            baseline.fitness, color=COLOURS[1 + 5 * (k % 2)], linestyle=":", label=baseline.label
        )
    axis.set_xlabel("generation")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("meta-train fitness (1 = PPO reference)")
    axis.legend(fontsize=8, loc="best")
    return _png(figure)


def curves_figure(data: ReportData) -> bytes | None:
    """Learning curves of the discovered candidates and the baselines, one panel per environment."""
    panels = [
        (split, env, curves)
        for split in ("meta_train", "meta_test")
        for env, curves in data.curves.get(split, {}).items()
    ]
    if not panels:
        return None
    figure = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (split, env, curves) in zip(axes, panels):
        for k, curve in enumerate(curves):
            dashed = curve.label in {b.label for b in data.baselines}
            axis.plot(
                curve.steps,
                [float("nan") if v is None else v for v in curve.returns],
                linestyle="--" if dashed else "-",
                color=COLOURS[k % len(COLOURS)],
                label=curve.label,
            )
        axis.set_title(
            f"{env} ({'held out' if split == 'meta_test' else 'meta-train'})", fontsize=10
        )
        axis.set_xlabel("environment steps")
        axis.set_ylabel("mean episode return")
        axis.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        axis.legend(fontsize=7)
    return _png(figure)


@dataclass(frozen=True)
class DriftPanel:
    entry: Entry
    png: bytes | None
    sentences: tuple[str, ...] = ()
    note: str = ""  # why there is no picture


def drift_panels(
    data: ReportData, cache, *, compute: bool, sandbox: str = Sandbox.AUTO
) -> list[DriftPanel]:
    """Heatmaps of d(r*A - drift)/dr for the discovered drifts, PPO's and DPO's. With
    `compute`, a landscape missing from the cache is computed by the sandbox and stored."""
    from scientist.web.landscapes import cache_key, compute_in_sandbox

    if not data.method.has_landscape:
        return []
    panels = []
    references = [b for b in data.baselines if b.label in REFERENCE_DRIFTS]
    for entry in [*data.discovered, *references]:
        digest = cache_key(entry.code_hash)
        if digest is None or not entry.code:
            panels.append(DriftPanel(entry, None, note="no code to plot"))
            continue
        try:
            if not cache.has(digest):
                if not compute:
                    panels.append(
                        DriftPanel(
                            entry, None, note="landscape not computed (run without --no-landscapes)"
                        )
                    )
                    continue
                cache.store(digest, compute_in_sandbox(data.method.task, entry.code, sandbox))
            panels.append(DriftPanel(entry, cache.png(digest), cache.sentences(digest)))
        except Exception as error:  # noqa: BLE001 (one missing figure does not stop the report; it says why)
            panels.append(
                DriftPanel(entry, None, note=f"no landscape: {type(error).__name__}: {error}")
            )
    return panels


def formula_svg(latex: str) -> bytes | None:
    """The formula as a tightly cropped SVG, None when mathtext cannot parse the LaTeX."""
    text = f"${_mathtext(latex)}$"
    font = FontProperties(**FORMULA_FONT)
    with matplotlib.rc_context(FORMULA_SVG):
        try:
            width, height, depth, *_ = MathTextParser("path").parse(text, dpi=72, prop=font)
        except ValueError:
            return None
        figure = Figure(figsize=(width / 72, height / 72))
        FigureCanvasSVG(figure)
        figure.text(0, depth / height, text, fontproperties=font)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", transparent=True, metadata={"Date": None})
    return buffer.getvalue()


def _mathtext(latex: str) -> str:
    """Plain brackets and bars: mathtext draws \\left( around a single letter smaller than
    the letter itself."""
    return re.sub(r"\\(?:left|right)([(|)])", r"\1", latex)


def formula_figures(data: ReportData) -> dict[int, bytes]:
    """SVGs of the discovered candidates' formulas, by candidate id."""
    drawn = {e.id: formula_svg(e.formula) for e in data.discovered if e.formula}
    return {i: svg for i, svg in drawn.items() if svg is not None}
