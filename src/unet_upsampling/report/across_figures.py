"""The cross-dataset figure of report/across.py, drawn on a bare matplotlib Figure (no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from unet_upsampling.report.runs import Run
from unet_upsampling.report.stats import mean_interval, median_range

FLOOR = 1e-9  # a flat-field std of 0 (a perfectly flat answer) has no place on a log axis


def quality_vs_artifacts(
    studies: dict[str, tuple[dict[str, list[Run]], str]], path: Path, x_key: str = "val/flat_std"
) -> Path:
    quality_vs_artifacts_figure(studies, x_key).savefig(path, dpi=110)
    return path


def quality_vs_artifacts_figure(studies: dict[str, tuple[dict[str, list[Run]], str]], x_key: str) -> Figure:
    """One panel per dataset (label: (groups, the outcome key reported for it, test/dice or val/dice)): the
    outcome against ``x_key``, a colour per mode, its seeds as dots and one large dot at (median x, mean y): the
    artifact measure is skewed across seeds."""
    modes = sorted({mode for groups, _ in studies.values() for mode in groups})
    colours = {mode: mpl.colormaps["tab10"](i % 10) for i, mode in enumerate(modes)}
    fig = Figure(figsize=(4.2 * len(studies) + 2.2, 4.2), layout="constrained")
    axes = fig.subplots(1, len(studies), squeeze=False)[0]
    for ax, (label, (groups, y_key)) in zip(axes, studies.items(), strict=True):
        ax.set_title(label, fontsize=10)
        if not any(np.isfinite(r.metrics.get(x_key, np.nan)) for group in groups.values() for r in group):
            ax.text(0.5, 0.5, f"no {x_key} values in these runs", ha="center", transform=ax.transAxes)
            continue
        for mode, group in groups.items():
            xs = np.array([r.metrics.get(x_key, np.nan) for r in group], dtype=float)
            ys = np.array([r.metrics.get(y_key, np.nan) for r in group], dtype=float)
            ax.scatter(np.maximum(xs, FLOOR), ys, s=10, color=colours[mode], alpha=0.6)
            x_median, y_mean = median_range(xs)[0], mean_interval(ys)[0]
            ax.scatter(max(x_median, FLOOR), y_mean, s=70, color=colours[mode], edgecolors="black", zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel(f"{x_key} (log; values below {FLOOR:g} drawn at {FLOOR:g})", fontsize=8)
        ax.set_ylabel(y_key)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", ms=8, mfc=colours[mode], mec="black", label=mode) for mode in modes]
    fig.legend(
        handles=handles, loc="outside right upper", fontsize=8, title="mode: median x, mean y (large); seeds (dots)"
    )
    return fig
