"""``python scripts/report.py <multirun dir>``: report.md, results.csv and figures from run directories."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from unet_upsampling.report import figures
from unet_upsampling.report.runs import Run, collect_runs
from unet_upsampling.report.stats import mean_interval, paired_difference

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
FLAT_AT_INIT = ("deconv_bilinear", "nearest_conv", "bilinear_conv")


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
    return {r.seed: r.metrics[key] for r in group if r.metrics.get(key) is not None}


def write_csv(runs: list[Run], path: Path) -> Path:
    keys = sorted({k for r in runs for k, v in r.metrics.items() if isinstance(v, (int, float))})
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["mode", "seed", "status", "run_dir", "error", *keys])
        for r in runs:
            writer.writerow(
                [
                    r.mode,
                    r.seed,
                    "ok" if r.ok else "failed",
                    r.dir,
                    r.error or "",
                    *(r.metrics.get(k, "") for k in keys),
                ]
            )
    return path


def findings(groups: dict[str, list[Run]]) -> list[str]:
    """Plain statements of what the numbers show, whichever way they fall."""
    lines = []
    ranked = sorted(groups, key=lambda m: -mean_interval([r.metrics.get("val/dice") for r in groups[m]])[0])
    if ranked:
        best = mean_interval([r.metrics.get("val/dice") for r in groups[ranked[0]]])
        lines.append(
            f"- Highest mean val/dice: **{ranked[0]}** {fmt_interval(*best)}; lowest: {ranked[-1]} "
            f"{fmt_interval(*mean_interval([r.metrics.get('val/dice') for r in groups[ranked[-1]]]))}."
        )
        if len(ranked) > 1:
            second = mean_interval([r.metrics.get("val/dice") for r in groups[ranked[1]]])
            overlap = np.isfinite(best[1]) and np.isfinite(second[2]) and best[1] <= second[2]
            lines.append(
                f"- The runner-up, {ranked[1]} ({fmt(second[0])}), is "
                f"{'within' if overlap else 'outside'} the leader's 95% interval"
                f"{': the seeds do not separate them' if overlap else ''}."
                if np.isfinite(best[1])
                else f"- Runner-up: {ranked[1]} ({fmt(second[0])}); one seed each, so no interval."
            )
    if {"deconv", "deconv_k3"} <= groups.keys():
        for key in ("init/noise_pef2", "val/noise_pef2", "val/flat_std", "val/pef2"):
            k3, k2 = (mean_interval([r.metrics.get(key) for r in groups[m]])[0] for m in ("deconv_k3", "deconv"))
            if np.isfinite(k3) and np.isfinite(k2):
                verdict = "more" if k3 > k2 else "not more"
                lines.append(
                    f"- Theory, uneven overlap: deconv_k3 shows {verdict} `{key}` than deconv (k=2): "
                    f"{fmt(k3)} vs {fmt(k2)}."
                )
    for mode in FLAT_AT_INIT:
        if mode in groups:
            pefs = [r.metrics.get(k) for r in groups[mode] for k in r.metrics if k.startswith("init/flat_pef")]
            stds = [r.metrics.get("init/flat_std") for r in groups[mode]]
            if pefs:
                flat = max(pefs) == 0
                lines.append(
                    f"- Theory, flat in -> flat out at init: {mode} answers a constant with "
                    f"{'a constant' if flat else 'a pattern'} (largest init/flat_pef {fmt(max(pefs))}, "
                    f"init/flat_std up to {fmt(max(stds))})."
                )
    return lines


def write_report(root: Path, out: Path | None = None, reference: str = "deconv") -> dict[str, Path]:
    """Writes report.md, results.csv and the figures into ``out`` (default: ``root``)."""
    root, out = Path(root), Path(out or root)
    runs = collect_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run directories (with .hydra/config.yaml) under {root}")
    out.mkdir(parents=True, exist_ok=True)
    groups = figures.by_mode(runs)
    paths = {"results.csv": write_csv(runs, out / "results.csv")}
    for name, draw in (
        ("quality", figures.quality),
        ("periodic_energy", figures.periodic_energy),
        ("flat_fields", figures.flat_fields),
        ("predictions", figures.predictions),
        ("spectra", figures.spectra),
        ("quality_vs_artifacts", figures.quality_vs_artifacts),
    ):
        paths[f"{name}.png"] = draw(runs, out / f"{name}.png")

    failed = [r for r in runs if not r.ok]
    md = [
        f"# Upsampling study: {root}",
        "",
        f"{len(runs)} runs: {len(runs) - len(failed)} finished, {len(failed)} failed. Intervals are 95% Student-t "
        "intervals over seeds; metrics are those of each run's best checkpoint (`val/`), at initialisation "
        "(`init/`), and on the test split (`test/`).",
        "",
        "## Findings",
        "",
        *findings(groups),
        "",
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
        rows = [
            [mode, str(len(group))] + [fmt_interval(*mean_interval([r.metrics.get(k) for r in group])) for k in keys]
            for mode, group in groups.items()
        ]
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
        "interior beyond the receptive field; `kernel_imbalance` is the phase-gain imbalance of the transposed "
        "convolutions (0 for the bilinear kernel); `boundary_f1` scores class edges within 2 px.",
        "",
    ]
    paths["report.md"] = out / "report.md"
    paths["report.md"].write_text("\n".join(md))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun directory (or any folder of run directories)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the multirun directory)")
    parser.add_argument("--reference", default="deconv", help="the mode paired differences are taken against")
    args = parser.parse_args(argv)
    paths = write_report(args.multirun_dir, args.out, args.reference)
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
