"""Figures (matplotlib, Agg canvas: no display, no pyplot state)."""

from scientist.plots.drift import drift_figure, save_drift_plot

__all__ = ["drift_figure", "save_drift_plot"]
