"""A study's report.md, results.csv and figures from run directories (several directories of one study are
merged), or from the results.csv files a report wrote (a file, or a folder holding them and no run directory)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np

from unet_upsampling.report import figures
from unet_upsampling.report.compare import (
    DEFAULT_MARGIN,
    POWER_NOTE,
    class_tables,
    compare,
    comparison_notes,
    comparison_table,
    correct,
    power_table,
    select,
    selection_lines,
)
from unet_upsampling.report.runs import (
    PROVENANCE,
    RUN_COLUMNS,
    Run,
    by_mode,
    collect_runs,
    deduplicate,
    is_results_csv,
    load_runs,
)
from unet_upsampling.report.stats import finite, mean_interval, paired_difference
from unet_upsampling.report.tables import (
    MIN_SEEDS,
    fmt,
    fmt_interval,
    left_out_line,
    measure_tables,
    per_seed,
    table,
)


def paired_text(mean: float, low: float, high: float, n: int) -> str:
    """A paired difference, its interval and seeds, and whether that (uncorrected) interval excludes 0."""
    if n < MIN_SEEDS:
        return f"{fmt(mean)} over {n} paired seed{'' if n == 1 else 's'}: too few for an interval"
    verdict = (
        "the seeds do not separate them"
        if low <= 0 <= high
        else f"{'higher' if low > 0 else 'lower'}, the interval excludes 0 before any correction (exploratory: "
        "what survives correction is under Comparisons)"
    )
    return f"{fmt_interval(mean, low, high)} over {n} seeds: {verdict}"


def write_csv(runs: list[Run], path: Path, left_out: list[Run]) -> Path:
    """One row per run; status ok, failed, or duplicate (a finished run the statistics leave out).

    The dataset, model and class names ride along, so that ``summary`` can read a study from this file alone.
    """
    keys = sorted({k for r in runs for k, v in r.metrics.items() if isinstance(v, (int, float))})
    duplicates = {r.dir for r in left_out}
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*RUN_COLUMNS, *keys])
        for r in runs:
            writer.writerow(
                [
                    r.mode,
                    r.seed,
                    "failed" if not r.ok else "duplicate" if r.dir in duplicates else "ok",
                    r.dir,
                    r.error or "",
                    r.data or "",
                    r.model or "",
                    "|".join(r.class_names or []),
                    "" if r.lr is None else r.lr,
                    "" if r.max_steps is None else r.max_steps,
                    *(r.provenance.get(k, "") for k in PROVENANCE),
                    *(r.metrics.get(k, "") for k in keys),
                ]
            )
    return path


def findings(groups: dict[str, list[Run]], key: str = "val/dice") -> list[str]:
    """Plain statements of what the numbers show, whichever way they fall; comparisons pair runs by seed."""
    dice = {mode: mean_interval([r.metrics.get(key) for r in group]) for mode, group in groups.items()}
    ranked = sorted(groups, key=lambda m: (not np.isfinite(dice[m][0]), -dice[m][0]))
    lines = []
    if ranked:
        lines.append(
            f"- Highest mean {key}: **{ranked[0]}** {fmt_interval(*dice[ranked[0]])}; "
            f"lowest: {ranked[-1]} {fmt_interval(*dice[ranked[-1]])}."
        )
    if len(ranked) > 1:
        leader, second = ranked[:2]
        difference = paired_difference(per_seed(groups[second], key), per_seed(groups[leader], key))
        lines.append(
            f"- Runner-up {second}: paired difference in {key} to the leader {leader} (same seed) "
            f"{paired_text(*difference)}."
        )
    if {"deconv", "deconv_k3"} <= groups.keys():
        for key in ("init/noise_pef2", "val/noise_pef2", "val/flat_std", "val/pef2"):
            difference = paired_difference(per_seed(groups["deconv_k3"], key), per_seed(groups["deconv"], key))
            if difference[3]:
                lines.append(
                    f"- Theory, uneven overlap: `{key}` of deconv_k3 minus that of deconv (k=2), same seed: "
                    f"{paired_text(*difference)}."
                )
    return lines + flat_at_init(groups)


def flat_at_init(groups: dict[str, list[Run]]) -> list[str]:
    """Theory: a block that maps a constant to a constant at init makes the network flat in, flat out; others paint.

    Which blocks are flat is each run's ``upsample_flat_at_init``; runs without it are left out.
    """
    lines = []
    for mode, group in groups.items():
        runs = [r for r in group if "upsample_flat_at_init" in r.metrics]
        claims = {bool(r.metrics["upsample_flat_at_init"]) for r in runs}
        pefs = finite([v for r in runs for k, v in r.metrics.items() if k.startswith("init/flat_pef")])
        if len(claims) > 1:
            lines.append(f"- {mode}: its runs disagree on upsample_flat_at_init, so no statement on it.")
        elif claims and pefs.size:
            expected, observed = claims.pop(), pefs.max() == 0
            stds = finite([r.metrics.get("init/flat_std") for r in runs])
            lines.append(
                f"- Theory, {'flat in -> flat out' if expected else 'uneven block -> pattern'} at init: {mode}, "
                f"whose block {'maps' if expected else 'does not map'} a constant to a constant, "
                f"answers a constant with {'a constant' if observed else 'a pattern'}, "
                f"{'as expected' if observed == expected else 'against the expectation'} "
                f"(largest init/flat_pef {fmt(pefs.max())}, init/flat_std up to {fmt(max(stds, default=np.nan))})."
            )
    return lines


def duplicate_runs(counted: list[Run], left_out: list[Run]) -> list[str]:
    """The "Duplicate runs" section: which run of a repeated mode and seed counts, which do not."""
    if not left_out:
        return []
    kept = {(r.mode, r.seed, r.lr): r.dir for r in counted if r.ok}
    return [
        "## Duplicate runs",
        "",
        "Finished runs that share a mode, a seed and a learning rate (two sweeps under one root, or a re-run): only "
        "the one whose "
        "metrics.json is the newest counts in the statistics; the others are left out.",
        "",
        *table(
            ["mode", "seed", "counted", "left out"],
            [[r.mode, str(r.seed), str(kept[(r.mode, r.seed, r.lr)]), str(r.dir)] for r in left_out],
        ),
        "",
    ]


def comparisons_section(groups: dict[str, list[Run]], reference: str, margin: float) -> list[str]:
    """Outcome and learning rates, the corrected comparisons against the reference, the power table and Dice per
    class; Holm's family is this sweep's modes against the reference."""
    selection = select(groups)
    comparisons = correct(compare(selection, reference))
    lines = ["## Comparisons against " + reference, "", *selection_lines(selection)]
    if comparisons:
        lines += [
            *comparison_table(comparisons, reference, margin, datasets=False),
            "",
            comparison_notes(
                f"this report's {len(comparisons)} comparisons, its modes against {reference}", margin, selection.swept
            ),
            "",
            "### Seeds needed",
            "",
            *power_table([(c.mode, c.test.sd if c.test.n >= MIN_SEEDS else np.nan) for c in comparisons]),
            "",
            POWER_NOTE,
            "",
        ]
    else:
        lines += [f"No comparison: no run of the reference mode {reference}.", ""]
    classes = class_tables(selection, reference)
    return lines + (["### Dice per class", "", *classes] if classes else [])


def git_commit(path: Path) -> str | None:
    """The short hash and date of the last commit of ``path``, None outside a git work tree or when untracked."""
    try:
        result = subprocess.run(
            ["git", "log", "-1", "--format=%h (%cs)", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # no git on this machine
        return None
    return result.stdout.strip() or None


def kept_figure_lines(names: list[str], out: Path) -> list[str]:
    """For a report from results.csv: the figures that need run directories, linked where an earlier report left
    them in ``out`` (with the commit that holds them), else named as skipped."""
    kept = [n for n in names if (out / n).is_file()]
    skipped = [n for n in names if n not in kept]
    lines = []
    for name in kept:
        commit = git_commit(out / name)
        lines.append(
            f"`{name}` needs the run directories: it is not redrawn; the file kept here was drawn from them by an "
            "earlier report" + (f", and committed in {commit}." if commit else ".")
        )
    if skipped:
        lines.append(
            f"Skipped, because they need the run directories and this report was written from results.csv: "
            f"{', '.join(f'`{n}`' for n in skipped)}."
        )
    return lines


def run_order(run: Run) -> tuple:
    return (run.mode, run.lr or 0.0, run.seed)


def read_roots(roots: list[Path]) -> tuple[list[Run], list[Run], list[Run], bool]:
    """(runs, counted, left out, from_csv): the run directories under the roots (of runs sharing mode, seed and
    learning rate the newest counts), and the runs of roots that are a report's results.csv."""
    from_csv = [r for r in roots if is_results_csv(r)]
    directories = [r for r in roots if r not in from_csv]
    runs = [r for root in directories for r in collect_runs(root)]
    counted, left_out = deduplicate(runs)
    for root in from_csv:
        _, csv_runs, csv_counted, csv_left_out = load_runs(root)
        runs, counted, left_out = runs + csv_runs, counted + csv_counted, left_out + csv_left_out
    return sorted(runs, key=run_order), sorted(counted, key=run_order), left_out, bool(from_csv)


def write_report(
    roots: Path | list[Path],
    out: Path | None = None,
    reference: str = "deconv",
    data_figures: bool = True,
    margin: float = DEFAULT_MARGIN,
) -> dict[str, Path]:
    """Writes report.md, results.csv and the figures into ``out`` (default: the first root, or the folder of its
    results.csv).

    A root is a sweep directory or a report's results.csv (a file, or a folder holding one and no run directory).
    Several roots (sweeps of one study split over sittings, by seeds or modes) are merged into one report; of runs
    sharing mode, seed and learning rate the newest counts. From results.csv, the figures that need run
    directories (flat fields, spectra, predictions, curves) are not drawn: an earlier report's files of those
    names in ``out`` are kept and linked. ``data_figures=False`` leaves out the figure that shows the dataset's
    images and masks (predictions.png), for data whose licence keeps them out of a published report. ``margin``
    is the equivalence margin of the TOST (Dice).
    """
    roots = [Path(r) for r in (roots if isinstance(roots, list) else [roots])]
    out = Path(out or (roots[0].parent if roots[0].is_file() else roots[0]))
    runs, counted, left_out, from_csv = read_roots(roots)
    out.mkdir(parents=True, exist_ok=True)
    selection = select(by_mode(counted))
    groups = selection.groups
    chosen = [r for group in groups.values() for r in group]
    csv_path = out / "results.csv"
    if len(roots) == 1 and roots[0].is_file() and roots[0].resolve() != csv_path.resolve():
        paths = {"results.csv": Path(shutil.copyfile(roots[0], csv_path))}  # as written, not re-formatted
    elif len(roots) == 1 and from_csv:
        paths = {"results.csv": csv_path}  # the file this report was read from
    else:
        paths = {"results.csv": write_csv(runs, csv_path, left_out)}
    figures_from_metrics = [
        ("quality", figures.quality),
        ("periodic_energy", figures.periodic_energy),
        ("quality_vs_artifacts", lambda runs, path: figures.quality_vs_artifacts(runs, path, y_key=selection.outcome)),
    ]
    figures_from_runs = [
        ("curves", figures.curves),
        ("flat_fields", figures.flat_fields),
        *([("predictions", figures.predictions)] if data_figures else []),
        ("spectra", figures.spectra),
    ]
    for name, draw in figures_from_metrics + ([] if from_csv else figures_from_runs):
        paths[f"{name}.png"] = draw(chosen, out / f"{name}.png")
    needing_runs = [f"{name}.png" for name, _ in figures_from_runs] if from_csv else []
    paths |= {name: out / name for name in needing_runs if (out / name).is_file()}
    tables, empty = measure_tables(groups)

    failed = [r for r in runs if not r.ok]
    md = [
        f"# Upsampling study: {', '.join(map(str, roots))}",
        "",
        f"{len(runs)} runs: {len(runs) - len(failed)} finished, {len(failed)} failed. Intervals are 95% Student-t "
        "intervals over seeds; artifact measures are medians [min, max] over seeds; metrics are those of each "
        "run's best checkpoint (`val/`), at initialisation (`init/`), and on the test split (`test/`)."
        + (f" {len(left_out)} duplicate runs left out (see Duplicate runs)." if left_out else "")
        + (" Tables show each mode at its chosen learning rate." if selection.swept else "")
        + (" Written from a report's results.csv, without the run directories." if from_csv else ""),
        "",
        "## Findings",
        "",
        *findings(groups, selection.outcome),
        "",
        *comparisons_section(by_mode(counted), reference, margin),
        *duplicate_runs(counted, left_out),
    ]
    if failed:
        md += [
            "## Failed runs",
            "",
            *table(
                ["mode", "seed", "run directory", "error"],
                [[r.mode, str(r.seed), str(r.dir), r.error or ""] for r in failed],
            ),
            "",
        ]
    md += [*tables, *([left_out_line(empty), ""] if empty else [])]
    md += ["## Figures", "", *(f"{line}\n" for line in kept_figure_lines(needing_runs, out))]
    md += [f"![{name}]({name})" for name in paths if name.endswith(".png")] + [""]
    md += [
        "Measures: `pef{P}` is the periodic energy fraction of the logit maps (share of variance at period P); "
        "`prob_pef2` the same of the class probabilities; `flat_*` probe the network with a constant image (at "
        "`grey{G}`: G % of the pixel range), `noise_*` with the constant plus weak noise, on the interior beyond "
        "the receptive field; `kernel_imbalance` is the spread of the transposed convolutions' phase gains "
        "relative to their RMS DC gain (0 for the bilinear kernel); `lpef{P}`: the PEF of the logits in tiles of 32 "
        "px, averaged (it sees a pattern whose sign changes across the image); `phase_excess{P}_pm`: per mille of "
        "wrong labels owed to the output phase (docs/modes.md); `shift{S}_disagree_pm`: per mille of pixels "
        "whose label changes when the image moves by S px; `boundary_f1` scores class edges within 2 px. `seeds` "
        "counts the finite values behind a row; a cell with fewer shows its own `n`. "
        "Bit-identical numbers need the same CPU type (the order of float operations differs between CPUs); "
        "the magnitude of `flat_std` is sensitive to seed and machine.",
        "",
    ]
    paths["report.md"] = out / "report.md"
    paths["report.md"].write_text("\n".join(md))
    return paths
