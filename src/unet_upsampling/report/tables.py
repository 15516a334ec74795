"""Number formatting and markdown tables, shared by the per-sweep report (build.py), the cross-dataset summary
(across.py) and the confirmatory report (confirmatory.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unet_upsampling.measures import ARTIFACT, COST, QUALITY, grey_keys, measure_of, report_keys
from unet_upsampling.report.runs import Run
from unet_upsampling.report.stats import finite, mean_interval, median_range


def fmt(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.4f}".rstrip("0").rstrip(".")


def fmt_p(p: float) -> str:
    """A p-value: three decimals, or < 0.001."""
    if p is None or not np.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_interval(mean: float, low: float, high: float) -> str:
    """mean [low, high]; the mean alone when there is no interval or it has no width."""
    return fmt(mean) if not np.isfinite(low) or low == high else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def per_seed(group: list[Run], key: str) -> dict[int, float]:
    """seed -> value, for the runs where ``key`` is a finite number."""
    return {r.seed: r.metrics[key] for r in group if finite([r.metrics.get(key)]).size}


MIN_SEEDS = 3  # below, a t interval says nothing (two values: t(0.975, 1) = 12.7)


def mean_cell(values: Sequence[float | None], bounded: bool) -> str:
    """mean [95% interval], the interval clipped to [0, 1] for a ``bounded`` measure (Dice, IoU, F1); the mean
    alone below MIN_SEEDS values."""
    mean, low, high = mean_interval(values)
    if len(finite(values)) < MIN_SEEDS:
        return fmt(mean)
    return fmt_interval(mean, max(low, 0.0), min(high, 1.0)) if bounded else fmt_interval(mean, low, high)


def row_cells(
    group: list[Run], keys: Sequence[str], spread: Sequence[str] = (), bounded: Sequence[str] = ()
) -> tuple[int, list[str]]:
    """A table row's seeds (the most finite values any of its metrics has) and one cell per metric: mean [95%
    interval] (``mean_cell``), or for the keys in ``spread`` median [min, max].

    A cell built from fewer values says how many: ``0.91 [0.88, 0.94] (n=4)``.
    """
    columns = [[r.metrics.get(k) for r in group] for k in keys]
    counts = [len(finite(values)) for values in columns]
    seeds = max(counts, default=0)
    cells = [
        (fmt_interval(*median_range(values)) if key in spread else mean_cell(values, key in bounded))
        + (f" (n={n})" if 0 < n < seeds else "")
        for key, values, n in zip(keys, columns, counts, strict=True)
    ]
    return seeds, cells


def left_out_line(keys: list[str]) -> str:
    """The one line that names the catalogue's columns no run has a value for."""
    return (
        f"Left out, without a value in any run (not measured by the train.py that made these runs, or no test split): "
        f"{', '.join(f'`{k}`' for k in keys)}."
        if keys
        else ""
    )


TABLES = (
    ("Segmentation quality", report_keys(QUALITY)),
    ("Artifacts at initialisation (median [min, max] over seeds)", report_keys(ARTIFACT, ("init",))),
    ("Artifacts after training (median [min, max] over seeds)", report_keys(ARTIFACT, ("val",))),
    ("Artifacts on the test split (median [min, max] over seeds)", report_keys(ARTIFACT, ("test",))),
    ("Cost", report_keys(COST)),
)  # (title, columns): every measure the catalogue shows in the report, once


def measure_tables(groups: dict[str, list[Run]], heading: str = "##") -> tuple[list[str], list[str]]:
    """(markdown, left out): one table per entry of TABLES under ``heading``, artifact measures as median [min,
    max]; a column without a finite value in any run is left out (an older train.py did not measure it, or no test
    split). The flat field at grey levels other than the shipped ones joins the table of its split as the runs hold
    it."""
    runs = [r for group in groups.values() for r in group]
    held = {k for r in runs for k in r.metrics}
    md, left_out = [], []
    for title, keys in TABLES:
        splits = {k.partition("/")[0] for k in keys if "/" in k}
        extra = (
            [k for k in grey_keys(held, tuple(splits)) if k not in keys] if measure_of(keys[0]).kind == ARTIFACT else []
        )
        present = [k for k in [*keys, *extra] if finite([r.metrics.get(k) for r in runs]).size]
        left_out += [k for k in keys if k not in present]
        if not present:
            continue
        spread = [k for k in present if measure_of(k).kind == ARTIFACT]
        bounded = [k for k in present if measure_of(k).kind == QUALITY and not k.endswith("/loss")]
        rows = [
            [mode, str(n), *cells]
            for mode, group in groups.items()
            for n, cells in [row_cells(group, present, spread, bounded)]
        ]
        md += [f"{heading} {title}", "", *table(["mode", "seeds", *present], rows), ""]
    return md, left_out
