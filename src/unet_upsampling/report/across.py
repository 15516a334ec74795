"""One summary across datasets, each a sweep directory or its report's results.csv: summary.md, summary.csv and
quality_vs_artifacts.png.

``python scripts/report.py summary DIR1 DIR2 ... --out DIR``.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_upsampling.measures import ARTIFACT, across_keys, measure_of
from unet_upsampling.report.compare import (
    DEFAULT_MARGIN,
    POWER_NOTE,
    Comparison,
    Selection,
    class_tables,
    compare,
    comparison_notes,
    comparison_table,
    correct,
    power_table,
    rms_sd,
    select,
    verdict,
)
from unet_upsampling.report.figures import quality_vs_artifacts_across
from unet_upsampling.report.runs import Run, by_mode, load_runs
from unet_upsampling.report.stats import finite, mean_interval, median_range, paired_difference
from unet_upsampling.report.tables import fmt, fmt_interval, left_out_line, per_seed, row_cells, table

COLUMNS = across_keys()  # the first, val/dice, stands for each study's outcome (test/dice where it has one)
SPREAD = tuple(k for k in COLUMNS if measure_of(k).kind == ARTIFACT)  # median [min, max] over seeds


@dataclass
class Study:
    """One sweep directory: its runs, the duplicates left out, and each mode's counted runs at its chosen
    learning rate (``selection``)."""

    label: str
    dir: Path
    runs: list[Run]
    left_out: list[Run]
    selection: Selection

    @property
    def groups(self) -> dict[str, list[Run]]:
        return self.selection.groups


def base_label(runs: list[Run], sweep_dir: Path) -> str:
    """The runs' dataset (Hydra choice data=), plus their model when it is not the plain unet."""
    datasets = sorted({r.data for r in runs if r.data}) or [sweep_dir.name]
    models = sorted({r.model for r in runs if r.model and r.model != "unet"})
    return " + ".join(datasets) + (f" / {' + '.join(models)}" if models else "")


def load_studies(sweep_dirs: list[Path]) -> list[Study]:
    """A study per sweep directory (or results.csv); two sweeps of the same dataset are told apart by their
    directory name."""
    studies = []
    for path in map(Path, sweep_dirs):
        folder, runs, counted, left_out = load_runs(path)
        studies.append(Study(base_label(runs, folder), folder, runs, left_out, select(by_mode(counted))))
    repeated = {label for label, n in Counter(s.label for s in studies).items() if n > 1}
    for study in studies:
        if study.label in repeated:
            study.label = f"{study.label} ({study.dir.name})"
    return studies


def dice_difference(study: Study, mode: str, reference: str) -> tuple[float, float, float, int]:
    """Paired outcome (test/dice, else val/dice) difference of ``mode`` minus ``reference`` over their common seeds
    (NaN, 0 for the reference)."""
    if mode == reference:
        return (np.nan, np.nan, np.nan, 0)
    key = study.selection.outcome
    return paired_difference(per_seed(study.groups[mode], key), per_seed(study.groups.get(reference, []), key))


def csv_row(study: Study, mode: str, reference: str) -> dict[str, float | int | str]:
    """The numbers behind one table row: mean, interval and n per column (artifact columns: median, min, max and
    n), the learning rate and outcome, and the paired outcome difference."""
    group = study.groups[mode]
    selection = study.selection
    row: dict[str, float | int | str] = {"dataset": study.label, "mode": mode}
    row |= {"lr": "" if selection.chosen[mode] is None else selection.chosen[mode], "outcome": selection.outcome}
    for key in COLUMNS:
        values = [r.metrics.get(key) for r in group]
        names = ("median", "min", "max") if key in SPREAD else ("", "low", "high")
        numbers = (median_range if key in SPREAD else mean_interval)(values)
        row |= {f"{key} {n}".strip(): v for n, v in zip(names, numbers, strict=True)} | {
            f"{key} n": len(finite(values))
        }
    row["seeds"] = max(row[f"{key} n"] for key in COLUMNS)
    if selection.outcome != "val/dice":
        values = [r.metrics.get(selection.outcome) for r in group]
        row |= dict(
            zip(
                (selection.outcome, f"{selection.outcome} low", f"{selection.outcome} high"),
                mean_interval(values),
                strict=True,
            )
        )
    name = f"Dice - {reference}"
    row |= dict(
        zip((name, f"{name} low", f"{name} high", f"{name} n"), dice_difference(study, mode, reference), strict=True)
    )
    return row


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["dataset", "mode"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def main_table(studies: list[Study], reference: str) -> list[str]:
    """Rows dataset x mode: the outcome Dice and its paired difference, each column's mean [95% interval] (artifact
    columns median [min, max]), the learning rate and the seeds used; a column without a value in any study is
    left out, and a line below the table names it."""
    runs = [r for study in studies for group in study.groups.values() for r in group]
    columns = [k for k in COLUMNS[1:] if finite([r.metrics.get(k) for r in runs]).size]
    rows = []
    outcomes = {study.selection.outcome for study in studies}
    for study in studies:
        outcome = study.selection.outcome
        for mode, group in study.groups.items():
            seeds, cells = row_cells(group, (outcome, *columns), SPREAD)
            mean, low, high, n = dice_difference(study, mode, reference)
            delta = "reference" if mode == reference else f"{fmt_interval(mean, low, high)} (n={n})"
            dice = cells[0] + (f" ({outcome})" if len(outcomes) > 1 else "")
            lr = study.selection.chosen[mode]
            rows.append([study.label, mode, dice, delta, *cells[1:], "" if lr is None else fmt(lr), str(seeds)])
    dice_header = f"Dice ({outcomes.pop()})" if len(outcomes) == 1 else "Dice"
    header = [
        "dataset",
        "mode",
        dice_header,
        f"Δ Dice vs {reference}",
        *(f"{k} (median [range])" if k in SPREAD else k for k in columns),
        "lr",
        "seeds",
    ]
    empty = [k for k in COLUMNS[1:] if k not in columns]
    return table(header, rows) + (["", left_out_line(empty)] if empty else [])


def resolvable_difference(study: Study, reference: str) -> np.ndarray:
    """Half-widths of the 95% intervals of each mode's paired Dice difference to the reference."""
    differences = [dice_difference(study, mode, reference) for mode in study.groups if mode != reference]
    return finite([(high - low) / 2 for _, low, high, _ in differences])


def resolution_lines(studies: list[Study], reference: str) -> list[str]:
    lines = []
    for study in studies:
        halves = resolvable_difference(study, reference)
        lines.append(
            f"- {study.label}: ±{fmt(float(np.median(halves)))}, the median over {len(halves)} "
            f"mode{'s' * (len(halves) != 1)} (range {fmt(halves.min())} to {fmt(halves.max())})"
            if halves.size
            else f"- {study.label}: n/a (needs {reference} and at least 2 seeds shared with it)"
        )
    return lines


def per_class_section(studies: list[Study], reference: str) -> list[str]:
    tables = []
    for study in studies:
        lines = class_tables(study.selection, reference)
        tables += [f"### {study.label}", "", *lines] if lines else []
    return ["## Dice per class", "", *tables] if tables else []


def corrected_section(studies: list[Study], reference: str, margin: float) -> list[str]:
    """Every mode against the reference on every dataset, Holm-corrected as one family, and the seeds needed."""
    comparisons: list[Comparison] = correct(
        [c for study in studies for c in compare(study.selection, reference, study.label)]
    )
    if not comparisons:
        return []
    outcomes = sorted({s.selection.outcome for s in studies})
    resolved = [c for c in comparisons if verdict(c, margin).startswith(("worse", "better"))]
    return [
        "## Which differences survive correction",
        "",
        f"Outcome: {' and '.join(f'`{o}`' for o in outcomes)}"
        + (
            f" ({'no' if outcomes == ['val/dice'] else 'in some studies no'} test split: that Dice is the one of the "
            "checkpoint chosen on the same validation images)."
            if "val/dice" in outcomes
            else "."
        ),
        "",
        *comparison_table(comparisons, reference, margin, datasets=True),
        "",
        comparison_notes(
            f"all {len(comparisons)} comparisons of this summary, every mode against {reference} on every dataset",
            margin,
            any(s.selection.swept for s in studies),
        ),
        "",
        f"Resolved as worse or better by the simultaneous intervals: {len(resolved)} of {len(comparisons)}"
        + (": " + ", ".join(f"{c.dataset} {c.mode}" for c in resolved) if resolved else "")
        + ".",
        "",
        "### Seeds needed",
        "",
        *power_table([(s.label, rms_sd([c for c in comparisons if c.dataset == s.label])) for s in studies]),
        "",
        POWER_NOTE + " The paired SD is the root mean square over the dataset's modes.",
        "",
    ]


def sweeps_table(studies: list[Study]) -> list[str]:
    rows = [
        [
            s.label,
            str(s.dir),
            str(len(s.runs)),
            str(sum(not r.ok for r in s.runs)),
            str(len(s.left_out)),
        ]
        for s in studies
    ]
    return table(["dataset", "sweep directory", "runs", "failed", "duplicates left out"], rows)


def write_summary(
    sweep_dirs: list[Path], out: Path, reference: str = "deconv", margin: float = DEFAULT_MARGIN
) -> dict[str, Path]:
    """Writes summary.md, summary.csv and quality_vs_artifacts.png into ``out``; one sweep directory per dataset."""
    studies = load_studies(sweep_dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [csv_row(study, mode, reference) for study in studies for mode in study.groups]
    paths = {
        "summary.csv": write_csv(rows, out / "summary.csv"),
        "quality_vs_artifacts.png": quality_vs_artifacts_across(
            {s.label: (s.groups, s.selection.outcome) for s in studies}, out / "quality_vs_artifacts.png"
        ),
    }
    md = [
        "# Upsampling study across datasets",
        "",
        *sweeps_table(studies),
        "",
        "Means with 95% Student-t intervals over seeds, of each run's best checkpoint; artifact measures as median "
        "[min, max] over seeds. Dice is `test/dice` where every run has one, else `val/dice` (the Dice header "
        "says which; each row does when studies differ). "
        f"Δ Dice is the paired difference to {reference} (same seed) over the n seeds both have. Where a study "
        "sweeps the learning rate, each mode is at the one with the best mean `val/dice` (`lr`). `seeds` counts the "
        "finite values behind a row; a cell with fewer shows its own n. Of finished runs sharing a mode, a seed and "
        "a learning rate in one sweep, only the one whose metrics.json is the newest counts. Bit-identical numbers "
        "need the same CPU type (float operations run in a different order on other CPUs); the magnitude of "
        "`val/flat_std` is sensitive to seed and machine.",
        "",
        "## Quality, artifacts and cost",
        "",
        *main_table(studies, reference),
        "",
        "## The smallest Dice difference these seeds resolve",
        "",
        f"Half-width of the 95% interval of the paired Dice difference to {reference}: a difference between "
        "two modes smaller than this is within seed noise, so “no difference” means “none larger than about this”.",
        "",
        *resolution_lines(studies, reference),
        "",
        *corrected_section(studies, reference, margin),
        *per_class_section(studies, reference),
        "## Quality against artifacts",
        "",
        "![quality_vs_artifacts](quality_vs_artifacts.png)",
        "",
    ]
    paths["summary.md"] = out / "summary.md"
    paths["summary.md"].write_text("\n".join(md))
    return paths
