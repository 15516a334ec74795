"""``python scripts/report.py <multirun dir>``: report.md, results.csv and figures from run directories.

``python scripts/report.py --summary DIR1 DIR2 ... --out DIR``: one summary across datasets (report/summary.py).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from unet_upsampling.errors import UserError
from unet_upsampling.report import figures
from unet_upsampling.report.runs import RUN_COLUMNS, Run, by_mode, collect_runs, deduplicate
from unet_upsampling.report.stats import finite, mean_interval, paired_difference

QUALITY = ("val/dice", "val/iou", "val/boundary_f1", "test/dice")
ARTIFACTS = (
    "init/flat_pef2",
    "val/flat_pef2",
    "init/flat_std",
    "val/flat_std",
    "init/noise_pef2",
    "val/noise_pef2",
    "init/kernel_imbalance",
    "val/kernel_imbalance",
)
COST = ("params", "trainable_params", "train_time_s")
PAIRED = ("val/dice", "val/boundary_f1", "val/flat_std")


def fmt(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.4f}".rstrip("0").rstrip(".")


def fmt_interval(mean: float, low: float, high: float) -> str:
    """mean [low, high]; the mean alone when there is no interval or it has no width."""
    return fmt(mean) if not np.isfinite(low) or low == high else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def per_seed(group: list[Run], key: str) -> dict[int, float]:
    """seed -> value, for the runs where ``key`` is a finite number."""
    return {r.seed: r.metrics[key] for r in group if finite([r.metrics.get(key)]).size}


def row_cells(group: list[Run], keys: tuple[str, ...]) -> tuple[int, list[str]]:
    """A table row's seeds (the most finite values any of its metrics has) and one cell per metric.

    A cell built from fewer values says how many: ``0.91 [0.88, 0.94] (n=2)``.
    """
    columns = [[r.metrics.get(k) for r in group] for k in keys]
    counts = [len(finite(values)) for values in columns]
    seeds = max(counts, default=0)
    cells = [
        fmt_interval(*mean_interval(values)) + (f" (n={n})" if 0 < n < seeds else "")
        for values, n in zip(columns, counts, strict=True)
    ]
    return seeds, cells


def paired_text(mean: float, low: float, high: float, n: int) -> str:
    """A paired difference, its interval and seeds, and whether that interval excludes 0."""
    if n < 2:
        return f"{fmt(mean)} over {n} paired seed{'' if n == 1 else 's'}: too few for an interval"
    verdict = (
        "the seeds do not separate them"
        if low <= 0 <= high
        else f"{'higher' if low > 0 else 'lower'}, the interval excludes 0"
    )
    return f"{fmt_interval(mean, low, high)} over {n} seeds: {verdict}"


def write_csv(runs: list[Run], path: Path, left_out: list[Run]) -> Path:
    """One row per run; status ok, failed, or duplicate (a finished run the statistics leave out).

    The dataset, model and class names ride along, so that ``--summary`` can read a study from this file alone.
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
                    *(r.metrics.get(k, "") for k in keys),
                ]
            )
    return path


def findings(groups: dict[str, list[Run]]) -> list[str]:
    """Plain statements of what the numbers show, whichever way they fall; comparisons pair runs by seed."""
    dice = {mode: mean_interval([r.metrics.get("val/dice") for r in group]) for mode, group in groups.items()}
    ranked = sorted(groups, key=lambda m: (not np.isfinite(dice[m][0]), -dice[m][0]))
    lines = []
    if ranked:
        lines.append(
            f"- Highest mean val/dice: **{ranked[0]}** {fmt_interval(*dice[ranked[0]])}; "
            f"lowest: {ranked[-1]} {fmt_interval(*dice[ranked[-1]])}."
        )
    if len(ranked) > 1:
        leader, second = ranked[:2]
        difference = paired_difference(per_seed(groups[second], "val/dice"), per_seed(groups[leader], "val/dice"))
        lines.append(
            f"- Runner-up {second}: paired difference in val/dice to the leader {leader} (same seed) "
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
    kept = {(r.mode, r.seed): r.dir for r in counted if r.ok}
    return [
        "## Duplicate runs",
        "",
        "Finished runs that share a mode and a seed (two sweeps under one root, or a re-run): only the one whose "
        "metrics.json is the newest counts in the statistics; the others are left out.",
        "",
        *table(
            ["mode", "seed", "counted", "left out"],
            [[r.mode, str(r.seed), str(kept[(r.mode, r.seed)]), str(r.dir)] for r in left_out],
        ),
        "",
    ]


def write_report(
    root: Path, out: Path | None = None, reference: str = "deconv", data_figures: bool = True
) -> dict[str, Path]:
    """Writes report.md, results.csv and the figures into ``out`` (default: ``root``).

    ``data_figures=False`` leaves out the figure that shows the dataset's images and masks
    (predictions.png), for data whose licence keeps them out of a published report.
    """
    root, out = Path(root), Path(out or root)
    runs = collect_runs(root)
    counted, left_out = deduplicate(runs)
    out.mkdir(parents=True, exist_ok=True)
    groups = by_mode(counted)
    paths = {"results.csv": write_csv(runs, out / "results.csv", left_out)}
    for name, draw in (
        ("quality", figures.quality),
        ("periodic_energy", figures.periodic_energy),
        ("flat_fields", figures.flat_fields),
        *([("predictions", figures.predictions)] if data_figures else []),
        ("spectra", figures.spectra),
        ("quality_vs_artifacts", figures.quality_vs_artifacts),
    ):
        paths[f"{name}.png"] = draw(counted, out / f"{name}.png")

    failed = [r for r in runs if not r.ok]
    md = [
        f"# Upsampling study: {root}",
        "",
        f"{len(runs)} runs: {len(runs) - len(failed)} finished, {len(failed)} failed. Intervals are 95% Student-t "
        "intervals over seeds; metrics are those of each run's best checkpoint (`val/`), at initialisation "
        "(`init/`), and on the test split (`test/`)."
        + (f" {len(left_out)} duplicate runs left out (see Duplicate runs)." if left_out else ""),
        "",
        "## Findings",
        "",
        *findings(groups),
        "",
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
    for title, keys in (("Segmentation quality", QUALITY), ("Artifacts", ARTIFACTS), ("Cost", COST)):
        rows = [[mode, str(n), *cells] for mode, group in groups.items() for n, cells in [row_cells(group, keys)]]
        md += [f"## {title}", "", *table(["mode", "seeds", *keys], rows), ""]
    if reference in groups:
        rows = []
        for mode, group in groups.items():
            if mode != reference:
                cells = []
                for key in PAIRED:
                    mean, low, high, n = paired_difference(per_seed(group, key), per_seed(groups[reference], key))
                    cells.append(f"{fmt_interval(mean, low, high)} (n={n})")
                rows.append([mode, *cells])
        md += [
            f"## Paired differences against {reference} (same seed)",
            "",
            *table(["mode", *[f"Δ {k}" for k in PAIRED]], rows),
            "",
        ]
    md += ["## Figures", ""] + [f"![{name}]({name})" for name in paths if name.endswith(".png")] + [""]
    md += [
        "Measures: `pef{P}` is the periodic energy fraction of the logit maps (share of variance at period P); "
        "`flat_*` probe the network with a constant image, `noise_*` with the constant plus weak noise, on the "
        "interior beyond the receptive field; `kernel_imbalance` is the spread of the transposed convolutions' "
        "phase gains relative to their RMS DC gain (0 for the bilinear kernel); `boundary_f1` scores class edges "
        "within 2 px. `seeds` counts the finite values behind a row; a cell with fewer shows its own `n`.",
        "",
    ]
    paths["report.md"] = out / "report.md"
    paths["report.md"].write_text("\n".join(md))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "multirun_dir", type=Path, nargs="?", help="a Hydra multirun directory (or any folder of run directories)"
    )
    parser.add_argument(
        "--summary",
        type=Path,
        nargs="+",
        metavar="SWEEP_DIR",
        help="instead: one study per dataset, each a sweep directory or the results.csv of its report; writes "
        "summary.md, summary.csv and quality_vs_artifacts.png to --out",
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the multirun directory)")
    parser.add_argument("--reference", default="deconv", help="the mode paired differences are taken against")
    parser.add_argument(
        "--no-data-figures",
        action="store_true",
        help="leave out predictions.png, which shows the dataset's images (for data you may not redistribute)",
    )
    args = parser.parse_args(argv)
    if (args.multirun_dir is None) == (args.summary is None):
        parser.error("give either a multirun directory or --summary SWEEP_DIR [SWEEP_DIR ...]")
    if args.summary and args.out is None:
        parser.error("--summary needs --out")
    from unet_upsampling.report.summary import write_summary  # summary builds on this module: no import cycle

    try:
        if args.summary:
            paths = write_summary(args.summary, args.out, args.reference)
        else:
            paths = write_report(args.multirun_dir, args.out, args.reference, data_figures=not args.no_data_figures)
    except (FileNotFoundError, UserError) as error:  # a wrong path or file: the message names it and the fix
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
