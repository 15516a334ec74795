"""The study's figures, drawn from run directories only (or their results.csv), and the cross-dataset figure."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from unet_upsampling.figures import displayable, show_flat_field
from unet_upsampling.report.runs import Run, by_mode
from unet_upsampling.report.stats import finite, mean_interval, median_range
from unet_upsampling.report.tables import MIN_SEEDS


def periods_of(runs: list[Run], prefix: str) -> list[int]:
    return sorted(
        {int(k[len(prefix) :]) for r in runs for k in r.metrics if k.startswith(prefix) and k[len(prefix) :].isdigit()}
    )


def save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def colour(i: int):
    return colormaps["tab10"](i % 10)


def quality(runs: list[Run], path: Path, keys=("val/dice", "val/iou", "val/boundary_f1")) -> Path:
    return save(quality_figure(runs, keys), path)


def quality_figure(runs: list[Run], keys: tuple[str, ...]) -> Figure:
    """Per mode, its seeds as dots and the mean with its 95% interval as a point with error bars, the interval
    within [0, 1]; no interval below 3 seeds (the tick says n). The y-axis holds every dot and interval."""
    groups = by_mode(runs)
    fig = Figure(figsize=(4.2 * len(keys), 4))
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        values = [finite([r.metrics.get(key) for r in group]) for group in groups.values()]
        for i, v in enumerate(values):
            ax.plot([i] * len(v), v, ".", color="0.6", ms=5)
            mean, low, high = mean_interval(v)
            if len(v) >= MIN_SEEDS:
                low, high = max(low, 0.0), min(high, 1.0)
                ax.errorbar(i + 0.15, mean, yerr=[[mean - low], [high - mean]], fmt="o", color="tab:blue", capsize=3)
            elif v.size:
                ax.plot(i + 0.15, mean, "o", color="tab:blue", mfc="white")
        labels = [f"{mode} (n={len(v)})" for mode, v in zip(groups, values, strict=True)]
        ax.set_xticks(range(len(groups)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.margins(y=0.1)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{key}: seeds, mean and 95% CI (n ≥ {MIN_SEEDS})", fontsize=9)
    return fig


def curve(run: Run, key: str = "val/dice") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key`` in the run's csv/metrics.csv, one value per step: a row sits at the step of the
    weights it validated, so the validation of the best checkpoint at the end repeats its step and is left out."""
    path = run.dir / "csv" / "metrics.csv"
    points: dict[int, float] = {}
    if path.is_file():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get(key) and row.get("step"):
                    points.setdefault(int(float(row["step"])), float(row[key]))
    steps = np.array(sorted(points), dtype=int)
    return steps, np.array([points[s] for s in steps], dtype=float)


def curves(runs: list[Run], path: Path, key: str = "val/dice") -> Path:
    """``key`` against the optimiser step, per mode: each seed a thin line, the mean over seeds (at the steps every
    seed has) a thick one."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    drawn = False
    for i, (mode, group) in enumerate(by_mode(runs).items()):
        seeds = [c for c in map(curve, group, [key] * len(group)) if c[0].size]
        for steps, values in seeds:
            ax.plot(steps, values, "-", lw=0.7, alpha=0.45, color=colour(i))
        if seeds:
            common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in seeds)))
            mean = [np.mean([values[steps == s][0] for steps, values in seeds]) for s in common]
            ax.plot(common, mean, "-", lw=2, color=colour(i), label=f"{mode} (n={len(seeds)})")
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, f"no {key} in these runs' csv/metrics.csv", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=7)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(key)
    ax.set_title(f"{key} at each validation: mean over seeds (thick), each seed (thin)", fontsize=9)
    return save(fig, path)


def periodic_energy(runs: list[Run], path: Path) -> Path:
    """PEF against period, log scale: validation logits and the noisy flat field, init vs trained."""
    groups = by_mode(runs)
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for ax, (kind, title) in zip(
        axes, (("pef", "validation logit maps"), ("noise_pef", "flat field + noise")), strict=True
    ):
        ps = periods_of(runs, f"val/{kind}")
        if not ps:
            ax.text(0.5, 0.5, f"no {kind} values in these runs", ha="center", transform=ax.transAxes)
            continue
        for i, (mode, group) in enumerate(groups.items()):
            color = colour(i)
            for stage, style in (("init", ":"), ("val", "-")):
                values = [np.nanmean([r.metrics.get(f"{stage}/{kind}{p}", np.nan) for r in group]) for p in ps]
                ax.plot(ps, values, style, marker="o", ms=3, color=color, label=mode if stage == "val" else None)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("period P (px)")
        ax.set_ylabel("periodic energy fraction")
        ax.set_title(f"{title}: dotted = init, solid = trained", fontsize=9)
    axes[1].legend(fontsize=7, loc="best")
    return save(fig, path)


def first_seed(groups: dict[str, list[Run]]) -> dict[str, Run]:
    return {mode: min(group, key=lambda r: r.seed) for mode, group in groups.items()}


def flat_fields(runs: list[Run], path: Path) -> Path:
    """Each mode's flat-field response (last logit map minus its mean), at init and trained."""
    chosen = first_seed(by_mode(runs))
    fig = Figure(figsize=(2.3 * max(1, len(chosen)), 6))
    axes = fig.subplots(2, max(1, len(chosen)), squeeze=False)
    for column, (mode, run) in enumerate(chosen.items()):
        arrays = run.arrays("artifacts")
        for row, stage in enumerate(("init", "final")):
            ax = axes[row][column]
            if f"{stage}_flat" in arrays:
                show_flat_field(ax, arrays[f"{stage}_flat"], f"{mode}\n{stage}")
            else:
                ax.axis("off")
    return save(fig, path)


def image_dice(pred: np.ndarray, mask: np.ndarray) -> float:
    """Dice of one image, the mean over the classes in prediction or truth of 2|P n T| / (|P| + |T|); pixels
    with the project's ignore labels (negative, 255) are left out."""
    valid = (mask >= 0) & (mask != 255)
    pred, mask = pred[valid], mask[valid]
    scores = [
        2 * np.sum((pred == c) & (mask == c)) / (np.sum(pred == c) + np.sum(mask == c)) for c in np.union1d(pred, mask)
    ]
    return float(np.mean(scores)) if scores else np.nan


def predictions(runs: list[Run], path: Path, crop: int = 32) -> Path:
    return save(predictions_figure(runs, crop), path)


def predictions_figure(runs: list[Run], crop: int) -> Figure:
    """First validation image per mode (first seed): prediction, a zoomed crop of it, and the error map; rows ranked
    by the image's Dice, highest first (pixel error favours a model that misses a small class)."""
    chosen = {m: r.arrays("predictions") for m, r in first_seed(by_mode(runs)).items()}
    chosen = {m: a for m, a in chosen.items() if "preds" in a}
    dice = {m: image_dice(a["preds"][0], a["masks"][0]) for m, a in chosen.items()}
    chosen = dict(sorted(chosen.items(), key=lambda item: -np.nan_to_num(dice[item[0]], nan=-1.0)))
    fig = Figure(figsize=(7.5, 2.5 * (len(chosen) + 1)))
    axes = fig.subplots(len(chosen) + 1, 3, squeeze=False)
    if chosen:
        first = next(iter(chosen.values()))
        image, mask = first["images"][0], first["masks"][0]
        top, left = (np.array(mask.shape) - crop) // 2
        box = (slice(top, top + crop), slice(left, left + crop))
        vmax = max(int(a["preds"].max()) for a in chosen.values()) or 1
        shown, cmap = displayable(image) if image.ndim == 3 else (image, "gray")
        axes[0][0].imshow(shown, cmap=cmap, interpolation="nearest")
        for ax, panel in zip(axes[0][1:], (mask, mask[box]), strict=True):
            ax.imshow(panel, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        for ax, title in zip(axes[0], ("image", "ground truth", "truth, zoomed"), strict=True):
            ax.set_title(title, fontsize=9)
        axes[0][0].add_patch(Rectangle((left, top), crop, crop, fill=False, color="red"))
        for row, (mode, arrays) in zip(axes[1:], chosen.items(), strict=True):
            pred = arrays["preds"][0]
            error = pred != mask
            for ax, panel, title, cmap in (
                (row[0], pred, f"{mode}: Dice {dice[mode]:.3f}", "viridis"),
                (row[1], pred[box], "zoomed", "viridis"),
                (row[2], error, f"errors: {error.mean():.1%}", "Reds"),
            ):
                ax.imshow(panel, cmap=cmap, vmin=0, vmax=1 if cmap == "Reds" else vmax, interpolation="nearest")
                ax.set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    return fig


def spectra(runs: list[Run], path: Path) -> Path:
    """Radially averaged log power spectrum of the validation logits, mean over seeds."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for i, (mode, group) in enumerate(by_mode(runs).items()):
        for stage, style in (("init", ":"), ("final", "-")):
            curves = [
                a[f"{stage}_spectrum"] for a in (r.arrays("artifacts") for r in group) if f"{stage}_spectrum" in a
            ]
            if curves:
                mean = np.mean(curves, axis=0)
                ax.plot(
                    np.linspace(0, 1, len(mean), endpoint=False),
                    mean,
                    style,
                    color=colour(i),
                    label=mode if stage == "final" else None,
                )
    ax.set_xlabel("radial frequency |f| / (sqrt(2) f_Nyquist)")
    ax.set_ylabel("log10 power")
    ax.set_title("spectra of validation logits: dotted = init, solid = trained", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no spectra in these runs", ha="center", transform=ax.transAxes)
    return save(fig, path)


def quality_vs_artifacts(runs: list[Run], path: Path, x_key: str = "val/flat_std", y_key: str = "val/dice") -> Path:
    """One point per run: segmentation quality against the flat-field deviation."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    groups = by_mode(runs)
    if not any(np.isfinite(r.metrics.get(x_key, np.nan)) for group in groups.values() for r in group):
        ax.text(0.5, 0.5, f"no {x_key} values in these runs", ha="center", transform=ax.transAxes)
        return save(fig, path)
    for i, (mode, group) in enumerate(groups.items()):
        xs = [max(r.metrics.get(x_key, np.nan), 1e-9) for r in group]
        ax.scatter(xs, [r.metrics.get(y_key, np.nan) for r in group], color=colour(i), label=mode, s=22)
    ax.set_xscale("log")
    ax.set_xlabel(f"{x_key} (std of the flat-field logits; floor 1e-9)")
    ax.set_ylabel(y_key)
    ax.legend(fontsize=7)
    return save(fig, path)


# The cross-dataset summary's figure (report/across.py).
FLOOR = 1e-9  # a flat-field std of 0 (a perfectly flat answer) has no place on a log axis


def quality_vs_artifacts_across(
    studies: dict[str, tuple[dict[str, list[Run]], str]], path: Path, x_key: str = "val/flat_std"
) -> Path:
    quality_vs_artifacts_across_figure(studies, x_key).savefig(path, dpi=110)
    return path


def quality_vs_artifacts_across_figure(studies: dict[str, tuple[dict[str, list[Run]], str]], x_key: str) -> Figure:
    """One panel per dataset (label: (groups, the outcome key reported for it, test/dice or val/dice)): the
    outcome against ``x_key``, a colour per mode, its seeds as dots and one large dot at (median x, mean y): the
    artifact measure is skewed across seeds."""
    modes = sorted({mode for groups, _ in studies.values() for mode in groups})
    colours = {mode: colormaps["tab10"](i % 10) for i, mode in enumerate(modes)}
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
