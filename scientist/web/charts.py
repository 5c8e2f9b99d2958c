"""Charts as inline SVG (no JavaScript, no chart library): fitness over generations,
learning curves and score intervals. Labels are escaped; numbers are formatted here."""

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from archive.reads import Progression

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 26, 44  # the legend goes in the top margin
NICE = (1, 2, 2.5, 5, 10)  # tick steps: these times a power of ten
LARGEST_STEP = 1e308  # the largest power of ten a float holds
EXACT_INDEX = 2.0**40  # tick indices up to this keep k * step within 1e-4 steps of exact
INDEX_SLACK = 1e-9  # a tick within this many steps of an end is still inside the range
FLAT = 1e-12  # values this close (relative) are drawn as equal: the rest is rounding
TINY = 1e-300  # ranges narrower than this are flat too (halving a subnormal loses it)
FLAT_MARGIN = 0.05  # a flat line's room above and below, relative to its value (at least 0.5)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values in [low, high], at most count + 2 of them, for any floats: ticks
    are counted by integer index (adding a step below half an ulp would never move on)."""
    count = max(1, count)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    middle = low / 2 + high / 2  # the one tick of a range too narrow (or wide) for steps
    # The width is taken in parts: high - low itself overflows for opposite huge values.
    step = _nice_step(min(high / count - low / count, LARGEST_STEP))
    if step is None or max(abs(low), abs(high)) / step > EXACT_INDEX:
        return [middle]  # ulps apart: no round value between
    first = math.ceil(low / step - INDEX_SLACK)
    last = min(math.floor(high / step + INDEX_SLACK), first + count + 1)
    ticks = [t for t in (k * step for k in range(first, last + 1)) if math.isfinite(t)]
    return ticks or [middle]  # one step wider than the range can miss it: count=1


def _nice_step(raw: float) -> float | None:
    """The smallest of 1, 2, 2.5, 5 and 10 times a power of ten that is at least `raw`;
    None when `raw` is too small (subnormal) to have a power of ten below it."""
    if not raw >= sys.float_info.min:
        return None
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next((m * magnitude for m in NICE if m * magnitude >= raw), 10 * magnitude)


def _label(value: float) -> str:
    return f"{value:.4g}"


def _clamp(value: float) -> float:
    return max(-sys.float_info.max, min(sys.float_info.max, value))


def _padded(low: float, high: float, pad: float) -> tuple[float, float]:
    """[low, high] widened by `pad` of its width on each side: never empty, never infinite.
    Values closer than rounding (or all equal) get a flat line mid-way, however large."""
    scale = max(abs(low), abs(high))
    if high - low <= FLAT * scale + TINY:
        margin = max(0.5, scale * FLAT_MARGIN)
    else:
        margin = high * pad - low * pad  # in parts: the width itself may overflow
    return _clamp(low - margin), _clamp(high + margin)


def _span(values: Sequence[float | None], pad: float = 0.05) -> tuple[float, float]:
    """The plotting range of the finite values (0 to 1 when there are none)."""
    finite = [v for v in values if _finite(v) is not None]
    if not finite:
        return 0.0, 1.0
    return _padded(min(finite), max(finite), pad)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fraction(value: float, low: float, high: float) -> float:
    """Where value lies from low (0) to high (1), halved first: the widths can overflow."""
    return (value / 2 - low / 2) / (high / 2 - low / 2)


@dataclass
class Frame:
    """A plotting area: data coordinates to SVG pixels, axes and their labels."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: int = 640
    height: int = 260
    x_label: str = ""
    y_label: str = ""

    def __post_init__(self):
        # Whatever the caller's ranges, each maps to pixels without dividing by zero.
        self.x_range, self.y_range = _span(self.x_range, 0.0), _span(self.y_range, 0.0)

    def x(self, value: float) -> float:
        return LEFT + _fraction(value, *self.x_range) * (self.width - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return self.height - BOTTOM - _fraction(value, *self.y_range) * (self.height - TOP - BOTTOM)

    def axes(self, x_ticks: Sequence[float] | None = None) -> list[str]:
        parts = [
            f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{self.width - LEFT - RIGHT}" '
            f'height="{self.height - TOP - BOTTOM}" fill="none" stroke="#888"/>'
        ]
        for tick in nice_ticks(*self.y_range):
            y = self.y(tick)
            parts.append(
                f'<line x1="{LEFT}" x2="{self.width - RIGHT}" '
                f'y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>'
            )
        for tick in x_ticks if x_ticks is not None else nice_ticks(*self.x_range):
            x = self.x(tick)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.height - BOTTOM}" '
                f'y2="{self.height - BOTTOM + 4}" stroke="#888"/>'
                f'<text x="{x:.1f}" y="{self.height - BOTTOM + 16}" text-anchor="middle">'
                f"{_label(tick)}</text>"
            )
        if self.x_label:
            parts.append(
                f'<text x="{(LEFT + self.width - RIGHT) / 2:.0f}" y="{self.height - 6}" '
                f'text-anchor="middle">{escape(self.x_label)}</text>'
            )
        if self.y_label:
            parts.append(
                f'<text transform="translate(14 {(TOP + self.height - BOTTOM) / 2:.0f}) '
                f'rotate(-90)" text-anchor="middle">{escape(self.y_label)}</text>'
            )
        return parts

    def line(
        self,
        points: Sequence[tuple[float, float | None]],
        colour: str,
        *,
        width: float = 1.5,
        dash: str = "",
        title: str = "",
    ) -> str:
        """A polyline, broken where a value is missing or not finite."""
        runs, run = [], []
        for x, y in points:
            if y is None or not math.isfinite(y):
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(f"{self.x(x):.1f},{self.y(y):.1f}")
        if run:
            runs.append(run)
        style = f' stroke-dasharray="{dash}"' if dash else ""
        tip = f"<title>{escape(title)}</title>" if title else ""
        return "".join(
            f'<polyline class="series" points="{" ".join(r)}" fill="none" stroke="{colour}" '
            f'stroke-width="{width}"{style}>{tip}</polyline>'
            for r in runs
            if len(r) > 1
        ) + "".join(
            f'<circle cx="{r[0].split(",")[0]}" cy="{r[0].split(",")[1]}" r="2" fill="{colour}"/>'
            for r in runs
            if len(r) == 1
        )

    def svg(self, body: list[str], label: str, legend: Sequence[tuple[str, str]] = ()) -> Markup:
        keys = "".join(
            f'<line x1="{LEFT + 150 * i}" x2="{LEFT + 18 + 150 * i}" '
            f'y1="{TOP - 12}" y2="{TOP - 12}" '
            f'stroke="{colour}" stroke-width="2"/><text x="{LEFT + 22 + 150 * i}" y="{TOP - 8}">'
            f"{escape(name)}</text>"
            for i, (name, colour) in enumerate(legend)
        )
        return Markup(
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" role="img" '
            f'aria-label="{escape(label)}">{"".join(body)}{keys}</svg>'
        )


def generation_chart(progression: Progression) -> Markup | None:
    """Every scored candidate (when few), the best and mean per generation and the best so
    far; for ES campaigns also the population's best and mean per ES generation."""
    stats = [
        s for s in progression.generations if s.scored
    ]  # a generation with no score has no line point
    points, es = progression.points or [], progression.es
    if not stats and not es:
        return None
    xs = [s.generation for s in stats] + [g for g, _, _ in es]
    ys = (
        [s.best for s in stats]
        + [s.mean for s in stats]
        + [f for _, f, _ in points]
        + [v for _, b, m in es for v in (b, m) if v is not None]
    )
    frame = Frame(
        _span(xs, 0.02) if len(set(xs)) > 1 else (min(xs) - 1, max(xs) + 1),
        _span(ys),
        x_label="generation",
        y_label="fitness (normalised, 1 = PPO)",
    )
    body = frame.axes()
    body += [
        f'<circle class="point" cx="{frame.x(g):.1f}" cy="{frame.y(f):.1f}" r="1.6" fill="#999" '
        f'fill-opacity="0.5"/>'
        for g, f, _ in points
        if math.isfinite(f)
    ]
    legend = []
    if stats:
        best_so_far, running = [], -math.inf
        for s in stats:
            running = max(running, s.best)
            best_so_far.append((s.generation, running))
        body.append(
            frame.line(
                [(s.generation, s.mean) for s in stats],
                COLOURS[0],
                dash="4 3",
                title="mean fitness of the generation",
            )
        )
        body.append(
            frame.line(
                [(s.generation, s.best) for s in stats],
                COLOURS[3],
                width=1.2,
                title="best of the generation",
            )
        )
        body.append(frame.line(best_so_far, COLOURS[2], width=2.5, title="best so far"))
        legend += [
            ("best so far", COLOURS[2]),
            ("generation best", COLOURS[3]),
            ("generation mean", COLOURS[0]),
        ]
    if es:
        body.append(frame.line([(g, b) for g, b, _ in es], COLOURS[4], title="ES population best"))
        body.append(
            frame.line(
                [(g, m) for g, _, m in es], COLOURS[5], dash="2 2", title="ES population mean"
            )
        )
        legend += [("ES best", COLOURS[4]), ("ES mean", COLOURS[5])]
    return frame.svg(body, "fitness over generations", legend[:4])


def curves_chart(
    series: Sequence[tuple[str, Sequence[float | None]]], y_label: str = "episode return"
) -> Markup | None:
    """Learning curves: one line per series, against the update index."""
    series = [(name, list(values)) for name, values in series if values]
    if not series:
        return None
    longest = max(len(values) for _, values in series)
    frame = Frame(
        (0.0, max(1.0, longest - 1.0)),
        _span([v for _, values in series for v in values]),
        x_label="update",
        y_label=y_label,
    )
    body = frame.axes()
    legend = []
    for i, (name, values) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        body.append(frame.line(list(enumerate(values)), colour, title=name))
        legend.append((name, colour))
    return frame.svg(body, "learning curves", legend[:4])


def interval_chart(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
) -> Markup | None:
    """IQMs with their 95% intervals, one row each, beside the random (0) and PPO (1) marks."""
    rows = [
        (label, iqm, _finite(low), _finite(high))
        for label, iqm, low, high in rows
        if _finite(iqm) is not None
    ]
    if not rows:
        return None
    row_height, label_width = 22, 230
    height = TOP + BOTTOM + row_height * len(rows)
    values = [v for _, iqm, low, high in rows for v in (iqm, low, high) if v is not None] + [
        0.0,
        1.0,
    ]
    frame = Frame(
        _span(values),
        (0.0, float(len(rows))),
        height=height,
        x_label="normalised score (0 = random, 1 = PPO)",
    )
    shift = label_width - LEFT  # the labels' column, left of the plotting area
    body = [f'<g transform="translate({shift} 0)">']
    for tick in nice_ticks(*frame.x_range):
        x = frame.x(tick)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{height - BOTTOM}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle">'
            f"{_label(tick)}</text>"
        )
    for mark, name in ((0.0, "random"), (1.0, "PPO")):
        x = frame.x(mark)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{height - BOTTOM}" stroke="#555" '
            f'stroke-dasharray="3 3"><title>{name}</title></line>'
        )
    for i, (label, iqm, low, high) in enumerate(rows):
        y = TOP + row_height * (i + 0.5)
        body.append(f'<text x="{4 - shift}" y="{y + 4:.1f}">{escape(label)}</text>')
        if low is not None and high is not None:
            body.append(
                f'<line x1="{frame.x(low):.1f}" x2="{frame.x(high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{COLOURS[0]}" stroke-width="3"/>'
            )
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        body.append(
            f'<circle cx="{frame.x(iqm):.1f}" cy="{y:.1f}" r="4" fill="{COLOURS[1]}"><title>'
            f"{escape(label)}: IQM {iqm:.3f}{interval}</title></circle>"
        )
    body.append(
        f'<text x="{(LEFT + frame.width - RIGHT) / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        f"{escape(frame.x_label)}</text></g>"
    )
    frame.width += shift  # after all mapping: the labels' column widens the picture
    return frame.svg(body, "normalised scores with 95% intervals")
