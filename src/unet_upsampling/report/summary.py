"""One summary across datasets, each a sweep directory or its report's results.csv: summary.md, summary.csv and
quality_vs_artifacts.png.

``python scripts/report.py --summary DIR1 DIR2 ... --out DIR``.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_upsampling.report.build import fmt, fmt_interval, per_seed, row_cells, table
from unet_upsampling.report.runs import Run, by_mode, collect_runs, deduplicate, runs_from_csv
from unet_upsampling.report.stats import finite, mean_interval, paired_difference
from unet_upsampling.report.summary_figures import quality_vs_artifacts

COLUMNS = ("val/dice", "val/boundary_f1", "val/pef2", "val/flat_std", "params", "train_time_s")


@dataclass
class Study:
    """One sweep directory: its runs, the duplicates left out, and the counted finished runs by mode."""

    label: str
    dir: Path
    runs: list[Run]
    left_out: list[Run]
    groups: dict[str, list[Run]]


def base_label(runs: list[Run], sweep_dir: Path) -> str:
    """The runs' dataset (Hydra choice data=), plus their model when it is not the plain unet."""
    datasets = sorted({r.data for r in runs if r.data}) or [sweep_dir.name]
    models = sorted({r.model for r in runs if r.model and r.model != "unet"})
    return " + ".join(datasets) + (f" / {' + '.join(models)}" if models else "")


def study_runs(path: Path) -> tuple[Path, list[Run], list[Run], list[Run]]:
    """(folder, runs, counted, left out) of a sweep directory, or of the results.csv a report wrote: a file, or a
    folder holding one and no run directory (a published study whose run directories are gone)."""
    csv_path = path if path.is_file() else path / "results.csv"
    if path.is_file() or (csv_path.is_file() and next(path.rglob(".hydra/config.yaml"), None) is None):
        counted, left_out = runs_from_csv(csv_path)
        return csv_path.parent, counted + left_out, counted, left_out
    runs = collect_runs(path)
    return (path, runs, *deduplicate(runs))


def load_studies(sweep_dirs: list[Path]) -> list[Study]:
    """A study per sweep directory (or results.csv); two sweeps of the same dataset are told apart by their
    directory name."""
    studies = []
    for path in map(Path, sweep_dirs):
        folder, runs, counted, left_out = study_runs(path)
        studies.append(Study(base_label(runs, folder), folder, runs, left_out, by_mode(counted)))
    repeated = {label for label, n in Counter(s.label for s in studies).items() if n > 1}
    for study in studies:
        if study.label in repeated:
            study.label = f"{study.label} ({study.dir.name})"
    return studies


def dice_difference(study: Study, mode: str, reference: str) -> tuple[float, float, float, int]:
    """Paired val/dice difference of ``mode`` minus ``reference`` over their common seeds (NaN, 0 for the reference)."""
    if mode == reference:
        return (np.nan, np.nan, np.nan, 0)
    return paired_difference(
        per_seed(study.groups[mode], "val/dice"), per_seed(study.groups.get(reference, []), "val/dice")
    )


def csv_row(study: Study, mode: str, reference: str) -> dict[str, float | int | str]:
    """The numbers behind one table row: mean, interval and n per column, and the paired Dice difference."""
    group = study.groups[mode]
    row: dict[str, float | int | str] = {"dataset": study.label, "mode": mode}
    for key in COLUMNS:
        values = [r.metrics.get(key) for r in group]
        mean, low, high = mean_interval(values)
        row |= {key: mean, f"{key} low": low, f"{key} high": high, f"{key} n": len(finite(values))}
    row["seeds"] = max(row[f"{key} n"] for key in COLUMNS)
    name = f"val/dice - {reference}"
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
    """Rows dataset x mode: each column's mean [95% interval], the paired Dice difference, and the seeds used."""
    rows = []
    for study in studies:
        for mode, group in study.groups.items():
            seeds, cells = row_cells(group, COLUMNS)
            mean, low, high, n = dice_difference(study, mode, reference)
            delta = "reference" if mode == reference else f"{fmt_interval(mean, low, high)} (n={n})"
            rows.append([study.label, mode, cells[0], delta, *cells[1:], str(seeds)])
    header = ["dataset", "mode", "Dice (val/dice)", f"Δ Dice vs {reference}", "boundary F1", *COLUMNS[2:], "seeds"]
    return table(header, rows)


def resolvable_difference(study: Study, reference: str) -> np.ndarray:
    """Half-widths of the 95% intervals of each mode's paired val/dice difference to the reference."""
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


def class_dice(study: Study) -> list[str]:
    """Mode x class table of mean val/dice_c{i}; classes named by data.class_names, else c0, c1, ..."""
    indices = sorted(
        {int(k[len("val/dice_c") :]) for g in study.groups.values() for r in g for k in r.metrics if is_class_key(k)}
    )
    if not indices:
        return []
    names = next((r.class_names for g in study.groups.values() for r in g if r.class_names), None) or []
    header = ["mode", *(names[i] if i < len(names) else f"c{i}" for i in indices)]
    rows = [
        [mode, *(fmt(mean_interval([r.metrics.get(f"val/dice_c{i}") for r in group])[0]) for i in indices)]
        for mode, group in study.groups.items()
    ]
    return [f"### {study.label}", "", *table(header, rows), ""]


def is_class_key(key: str) -> bool:
    return key.startswith("val/dice_c") and key[len("val/dice_c") :].isdigit()


def per_class_section(studies: list[Study]) -> list[str]:
    tables = [line for study in studies for line in class_dice(study)]
    return ["## Dice per class (mean over seeds)", "", *tables] if tables else []


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


def write_summary(sweep_dirs: list[Path], out: Path, reference: str = "deconv") -> dict[str, Path]:
    """Writes summary.md, summary.csv and quality_vs_artifacts.png into ``out``; one sweep directory per dataset."""
    studies = load_studies(sweep_dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [csv_row(study, mode, reference) for study in studies for mode in study.groups]
    paths = {
        "summary.csv": write_csv(rows, out / "summary.csv"),
        "quality_vs_artifacts.png": quality_vs_artifacts(
            {s.label: s.groups for s in studies}, out / "quality_vs_artifacts.png"
        ),
    }
    md = [
        "# Upsampling study across datasets",
        "",
        *sweeps_table(studies),
        "",
        "Means with 95% Student-t intervals over seeds, of each run's best checkpoint. Δ Dice is the paired "
        f"difference to {reference} (same seed) over the n seeds both have. `seeds` counts the finite values behind "
        "a row; a cell with fewer shows its own n. Of finished runs sharing a mode and a seed in one sweep, only "
        "the one whose metrics.json is the newest counts.",
        "",
        "## Quality, artifacts and cost",
        "",
        *main_table(studies, reference),
        "",
        "## The smallest Dice difference these seeds resolve",
        "",
        f"Half-width of the 95% interval of the paired val/dice difference to {reference}: a difference between "
        "two modes smaller than this is within seed noise, so “no difference” means “none larger than about this”.",
        "",
        *resolution_lines(studies, reference),
        "",
        *per_class_section(studies),
        "## Quality against artifacts",
        "",
        "![quality_vs_artifacts](quality_vs_artifacts.png)",
        "",
    ]
    paths["summary.md"] = out / "summary.md"
    paths["summary.md"].write_text("\n".join(md))
    return paths
