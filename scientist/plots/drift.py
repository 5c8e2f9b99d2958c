"""The drift figure, after the Discovered Policy Optimisation paper's: a heat map of the
objective's ratio derivative dJ/dr = d(r*A - D)/dr over (r, A), slices of it at fixed A,
and the detected features as captions. Positive dJ/dr raises the action's probability."""

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from sandbox.landscape import Landscape

SLICES = (-1.0, -0.5, 0.5, 1.0)
RATIO_TICKS = (1 / 3, 0.5, 0.8, 1.0, 1.2, 2.0, 3.0)
CLIP_EDGES = (0.8, 1.2)  # PPO's, drawn for reference
CAPTION_WIDTH = 150


def drift_figure(landscape: Landscape, sentences: Sequence[str] = (), title: str = "") -> Figure:
    figure = Figure(figsize=(13, 6.5 + 0.22 * len(sentences)), layout="constrained")
    FigureCanvasAgg(figure)
    rows = [["map", "slices"], ["caption", "caption"]] if sentences else [["map", "slices"]]
    axes = figure.subplot_mosaic(
        rows, height_ratios=[5, 0.3 + 0.25 * len(sentences)] if sentences else None
    )
    _heat_map(figure, axes["map"], landscape)
    _slices(axes["slices"], landscape)
    if sentences:
        caption = axes["caption"]
        caption.axis("off")
        lines = [
            line
            for s in sentences
            for line in textwrap.wrap(s, CAPTION_WIDTH, subsequent_indent="    ")
        ]
        caption.text(
            0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, transform=caption.transAxes
        )
    if title:
        figure.suptitle(title)
    return figure


def save_drift_plot(
    landscape: Landscape, path: Path, *, sentences: Sequence[str] = (), title: str = ""
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    drift_figure(landscape, sentences, title).savefig(path, format="png", dpi=110)
    return path


def _ratio_axis(axis) -> None:
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(FixedLocator(RATIO_TICKS))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticklabels([f"{t:.2g}" for t in RATIO_TICKS])
    axis.set_xlabel("ratio r = π / π_old")


def _heat_map(figure: Figure, axis, landscape: Landscape) -> None:
    g = landscape.d_objective_dr
    finite = np.abs(g[np.isfinite(g)])
    limit = (
        float(np.percentile(finite, 99)) if finite.size else 1.0
    )  # a few spikes would wash out the rest
    limit = limit if limit > 0 else 1.0
    axis.set_facecolor("0.75")  # NaN cells
    mesh = axis.pcolormesh(
        landscape.ratio,
        landscape.advantage,
        np.ma.masked_invalid(g),
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        shading="nearest",
    )
    if finite.size and np.nanmin(g) < 0 < np.nanmax(g):
        axis.contour(
            landscape.ratio, landscape.advantage, g, levels=[0.0], colors="k", linewidths=0.8
        )
    for edge in CLIP_EDGES:
        axis.axvline(edge, color="0.3", linestyle=":", linewidth=0.8)
    axis.axvline(1.0, color="0.3", linewidth=0.6)
    axis.axhline(0.0, color="0.3", linewidth=0.6)
    _ratio_axis(axis)
    axis.set_ylabel("advantage A")
    axis.set_title("dJ/dr, J = r·A − D(r, A)  (black: dJ/dr = 0; dotted: PPO's clip)", fontsize=10)
    figure.colorbar(mesh, ax=axis, label="dJ/dr")


def _slices(axis, landscape: Landscape) -> None:
    for value in SLICES:
        row = int(np.argmin(np.abs(landscape.advantage - value)))
        axis.plot(
            landscape.ratio,
            landscape.d_objective_dr[row],
            label=f"A = {landscape.advantage[row]:+.1f}",
        )
    for edge in CLIP_EDGES:
        axis.axvline(edge, color="0.3", linestyle=":", linewidth=0.8)
    axis.axhline(0.0, color="0.3", linewidth=0.6)
    _ratio_axis(axis)
    axis.set_ylabel("dJ/dr")
    axis.set_title("slices at fixed advantage", fontsize=10)
    axis.legend(fontsize=9)
