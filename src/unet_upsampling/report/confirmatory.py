"""``python scripts/report.py protocol docs/study/protocol.yaml ROOT ...``: the confirmatory study's report.md and
figures, from run directories or results.csv shards, as the protocol (report/protocol.py) prescribes: the primary
contrasts with their simultaneous intervals and verdicts, the pilot, the budget check, the seeds; then, labelled
exploratory, estimates with unadjusted intervals and no verdicts. ``--sd-only`` prints the blind SD re-estimate
alone (no difference, no interval)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from unet_upsampling.report import figures
from unet_upsampling.report.protocol import (
    BudgetCheck,
    Contrast,
    Protocol,
    Sorted,
    blind_sd,
    budget_check,
    contrast,
    pilot_choices,
    primary_contrasts,
    seeds_for,
    sort_runs,
    verdict,
)
from unet_upsampling.report.runs import Run
from unet_upsampling.report.stats import equal_means_in_blocks, finite, mean_interval
from unet_upsampling.report.tables import fmt, fmt_interval, fmt_p, measure_tables, table


def sd_lines(protocol: Protocol, by_data: dict[str, Sorted]) -> list[str]:
    """Per dataset: seeds run, the blind SD, the seeds it asks for, and each contrast's half-width at the seeds run:
    functions of the SDs alone."""
    rows = []
    for data in protocol.datasets:
        contrasts = [c for c in primary_contrasts(protocol, by_data) if c.data == data]
        sd = blind_sd(contrasts)
        seeds = max((c.n for c in contrasts), default=0)
        widths = ", ".join(f"{c.mode} {fmt(c.half_width)}" for c in contrasts)
        rows.append([data, str(seeds), fmt(sd), str(seeds_for(sd, protocol)), widths])
    return [
        f"Blind SD re-estimate (protocol of {protocol.registered}): the root mean square of the primary contrasts' SDs "
        f"of the per-seed differences in `{protocol.endpoint}`; the seeds it asks for are the smallest n with a "
        f"simultaneous half-width (Bonferroni over {protocol.contrasts}) of at most {protocol.margin:g}, capped at "
        f"{protocol.seed_cap}.",
        "",
        *table(["dataset", "seeds run", "paired SD", "seeds needed", "half-width at the seeds run"], rows),
        "",
    ]


def contrast_rows(contrasts: list[Contrast], margin: float) -> list[list[str]]:
    return [
        [
            c.data,
            c.mode,
            fmt_interval(c.mean, c.low, c.high),
            fmt(c.half_width),
            str(c.n),
            verdict(c.low, c.high, margin),
        ]
        for c in contrasts
    ]


def primary_section(protocol: Protocol, contrasts: list[Contrast]) -> list[str]:
    complete = all(c.half_width <= protocol.margin or c.n >= protocol.seed_cap for c in contrasts)
    return [
        "## Primary contrasts",
        "",
        f"`{protocol.endpoint}` of each primary mode minus that of `{protocol.reference}`, paired by seed, at each "
        f"dataset's budget and each mode's frozen learning rate. Intervals are simultaneous at 95% over the "
        f"{protocol.contrasts} contrasts (each a two-sided paired-t interval at {protocol.level:.4%}, Bonferroni); "
        f"the verdicts follow protocol.md's rule with the margin ±{protocol.margin:g}.",
        "",
        *table(
            ["dataset", "mode", f"Δ vs {protocol.reference} [simultaneous 95%]", "half-width", "seeds", "verdict"],
            contrast_rows(contrasts, protocol.margin),
        ),
        "",
        "The study is "
        + ("complete" if complete else "not complete")
        + f": every half-width at most {protocol.margin:g} or its dataset at the seed cap ({protocol.seed_cap}).",
        "",
        "![The primary contrasts against the margin](contrasts.png)",
        "",
    ]


def pilot_section(protocol: Protocol, by_data: dict[str, Sorted]) -> list[str]:
    lines = ["## Learning rates (pilot)", ""]
    for data in protocol.datasets:
        choices = pilot_choices(protocol, by_data[data].pilot)
        if not choices:
            lines += [f"{data}: no pilot run.", ""]
            continue
        rates = sorted({lr for c in choices for lr in c.by_rate})
        rows = []
        for c in choices:
            cells = [
                ("**{}**" if lr == c.chosen else "{}").format(f"{fmt(c.by_rate[lr][0])} (n={c.by_rate[lr][1]})")
                if lr in c.by_rate
                else ""
                for lr in rates
            ]
            frozen = protocol.frozen_rate(data, c.mode)
            note = f"extend to {c.extend:g}" if c.extend else ("frozen" if frozen == c.chosen else "not frozen yet")
            rows.append([c.mode, *cells, f"{frozen:g}", note])
        lines += [
            f"{data}: mean `{protocol.rate_key}` of the final weights over the pilot seeds "
            f"({', '.join(map(str, sorted(protocol.pilot_seeds)))}); bold: the rule's choice.",
            "",
            *table(["mode", *(f"lr {lr:g}" for lr in rates), "frozen rate", ""], rows),
            "",
        ]
    return [*lines, "![Pilot: validation Dice against the learning rate](pilot.png)", ""]


def budget_section(protocol: Protocol, checks: list[BudgetCheck]) -> list[str]:
    rows = [
        [
            c.data,
            str(protocol.budgets[c.data]),
            fmt(c.mean),
            fmt(c.upper),
            str(c.n),
            c.outcome,
            ", ".join(f"{m} {fmt(float(np.mean(g)))}" for m, g in c.gains.items() if g),
        ]
        for c in checks
    ]
    return [
        "## Budget check",
        "",
        f"Gain in `{protocol.rate_key}` from the budget N to 2N on the first block (seeds "
        f"{', '.join(map(str, protocol.first_block))}), pooled over modes and seeds, with its one-sided 95% upper "
        f"bound; the budget passes when the bound is below {protocol.margin:g}, decided once every pair of the block "
        "is in (before that, interim). The per-mode mean gains are "
        "exploratory.",
        "",
        *table(["dataset", "N", "pooled gain", "upper bound", "pairs", "budget", "mean gain per mode"], rows),
        "",
    ]


def exploratory_contrasts(protocol: Protocol, by_data: dict[str, Sorted]) -> list[str]:
    rows = []
    for data in protocol.datasets:
        groups = by_data[data].at_budget
        for mode in sorted(set(groups) - set(protocol.modes)):
            c = contrast(data, mode, groups[mode], groups.get(protocol.reference, []), protocol.endpoint, 0.95)
            rows.append([data, mode, fmt_interval(c.mean, c.low, c.high), str(c.n)])
    if not rows:
        return []
    return [
        "### Other modes against the reference",
        "",
        *table(["dataset", "mode", f"Δ vs {protocol.reference} [95%, unadjusted]", "seeds"], rows),
        "",
    ]


PHASE_KEY = "test/phase_fp_c{c}_{a}{b}_pm"


def phase_classes(runs: list[Run]) -> list[int]:
    keys = (k for r in runs for k in r.metrics if k.startswith("test/phase_fp_c"))
    return sorted({int(k[len("test/phase_fp_c") :].split("_")[0]) for k in keys})


def phase_matrix(runs: list[Run], c: int, period: int) -> np.ndarray:
    """Seeds x phases of period 2 or 4: the rate of false class-c labels per phase (period 2 from the 16 phases of
    period 4, each of equal weight)."""
    rows = []
    for run in runs:
        rates = np.array(
            [[run.metrics.get(PHASE_KEY.format(c=c, a=a, b=b), np.nan) for b in range(4)] for a in range(4)]
        )
        if period == 2:
            rates = rates.reshape(2, 2, 2, 2).mean(axis=(0, 2))
        rows.append(rates.ravel())
    return np.array(rows, dtype=float)


def phase_section(protocol: Protocol, by_data: dict[str, Sorted]) -> list[str]:
    rows = []
    for data in protocol.datasets:
        for mode, runs in by_data[data].at_budget.items():
            classes = sorted(
                {
                    int(k.split("_c")[1].split("_")[0])
                    for r in runs
                    for k in r.metrics
                    if k.startswith("test/phase_fp_c")
                }
            )
            if not classes or len(runs) < 2:
                continue
            cells = []
            for period in (2, 4):
                p = [equal_means_in_blocks(phase_matrix(runs, c, period)) for c in classes]
                cells.append(fmt_p(min(1.0, len(p) * np.nanmin(p))) if finite(p).size else "n/a")
            excess = [mean_interval([r.metrics.get(f"test/phase_excess{p}_pm") for r in runs]) for p in (2, 4)]
            rows.append([data, mode, str(len(runs)), *(fmt_interval(*e) for e in excess), *cells])
    if not rows:
        return []
    return [
        "### Wrong labels by output phase",
        "",
        "Phase excess (per mille: the wrong labels that would go if every output phase did as well as its best), and "
        "the p of the test that the rates of false labels of each class are equal across phases, over seeds "
        "(randomized-block F test, seeds as blocks; the smallest p over the classes times their number). Each test "
        "image is predicted at a random offset per image and seed, so content falls on every phase alike.",
        "",
        *table(
            ["dataset", "mode", "seeds", "excess P=2 [95%]", "excess P=4 [95%]", "p equal, P=2", "p equal, P=4"], rows
        ),
        "",
    ]


def mode_order(protocol: Protocol, groups: dict[str, list[Run]]) -> list[str]:
    """The protocol's modes first, in its order, then any other mode by name."""
    return [m for m in protocol.modes if m in groups] + sorted(set(groups) - set(protocol.modes))


def per_class_section(protocol: Protocol, by_data: dict[str, Sorted]) -> list[str]:
    lines = []
    for data in protocol.datasets:
        groups = by_data[data].at_budget
        runs = [r for g in groups.values() for r in g]
        classes = sorted({int(k[len("test/dice_c") :]) for r in runs for k in r.metrics if k.startswith("test/dice_c")})
        if not classes:
            continue
        names = next((r.class_names for r in runs if r.class_names), None) or [f"c{i}" for i in classes]
        rows = []
        for mode in mode_order(protocol, groups):
            cells = []
            for c in classes:
                mean = mean_interval([r.metrics.get(f"test/dice_c{c}") for r in groups[mode]])
                if mode == protocol.reference:
                    cells.append(fmt_interval(*mean))
                    continue
                d = contrast(data, mode, groups[mode], groups.get(protocol.reference, []), f"test/dice_c{c}", 0.95)
                cells.append(f"{fmt(mean[0])}, Δ {fmt_interval(d.mean, d.low, d.high)}")
            rows.append([mode, *cells])
        lines += [
            f"{data}: `test/dice_c<i>` per mode; for the others, the paired Δ to {protocol.reference} [95%, "
            "unadjusted].",
            "",
            *table(["mode", *(names[c] if c < len(names) else f"c{c}" for c in classes)], rows),
            "",
        ]
    return ["### Dice per class", "", *lines] if lines else []


def measures_section(protocol: Protocol, by_data: dict[str, Sorted]) -> list[str]:
    """Per dataset, every measure per mode at the budget (quality as mean [95%], artifacts as median [min, max]):
    the artifact measures and the cost are estimates beside the contrasts, not tested."""
    lines = []
    for data in protocol.datasets:
        groups = by_data[data].at_budget
        md, _ = measure_tables({m: groups[m] for m in mode_order(protocol, groups)}, heading=f"#### {data}:")
        lines += md
    return ["### Measures per mode", "", *lines] if lines else []


def contrasts_figure(protocol: Protocol, contrasts: list[Contrast]) -> Figure:
    """Each primary contrast's estimate and simultaneous interval, the margin shaded; the legend above the axes,
    clear of every interval."""
    fig = Figure(figsize=(7, 0.45 * len(contrasts) + 1.6))
    ax = fig.subplots()
    ax.axvspan(-protocol.margin, protocol.margin, color="tab:green", alpha=0.12, label=f"±{protocol.margin:g} margin")
    ax.axvline(0, color="black", lw=0.8)
    for i, c in enumerate(contrasts):
        if np.isfinite(c.low):
            ax.plot([c.low, c.high], [i, i], color="tab:blue", lw=2)
        ax.plot(c.mean, i, "o", color="tab:blue")
    ax.set_yticks(range(len(contrasts)), [f"{c.data}: {c.mode} (n={c.n})" for c in contrasts], fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(6, steps=[1, 2.5, 5, 10]))
    ax.set_xlabel(f"Δ {protocol.endpoint} vs {protocol.reference}, simultaneous 95% intervals")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1), frameon=False)
    return fig


def pilot_figure(protocol: Protocol, by_data: dict[str, Sorted], path: Path) -> Path:
    fig = Figure(figsize=(4.5 * len(protocol.datasets), 3.8))
    for ax, data in zip(fig.subplots(1, len(protocol.datasets), squeeze=False)[0], protocol.datasets, strict=True):
        choices = pilot_choices(protocol, by_data[data].pilot)
        for i, choice in enumerate(choices):
            rates = sorted(choice.by_rate)
            ax.plot(rates, [choice.by_rate[r][0] for r in rates], "o-", color=figures.colour(i), label=choice.mode)
            ax.plot(choice.chosen, choice.by_rate[choice.chosen][0], "*", ms=12, color=figures.colour(i))
        ax.set_title(f"{data} (star: chosen)", fontsize=9)
        if not choices:
            ax.text(0.5, 0.5, "no pilot run yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"mean {protocol.rate_key} over the pilot seeds")
        ax.legend(fontsize=7)
    return figures.save(fig, path)


def write_confirmatory(protocol_path: Path, runs: list[Run], out: Path, sd_only: bool = False) -> dict[str, Path]:
    """report.md (or, with ``sd_only``, sd.md) and the figures into ``out``."""
    protocol = Protocol.load(protocol_path)
    by_data = {data: sort_runs(protocol, data, runs) for data in protocol.datasets}
    out.mkdir(parents=True, exist_ok=True)
    if sd_only:
        path = out / "sd.md"
        path.write_text("\n".join(["# Confirmatory study: the blind SD re-estimate", "", *sd_lines(protocol, by_data)]))
        return {"sd.md": path}
    contrasts = primary_contrasts(protocol, by_data)
    left_out = [(run, why) for data in protocol.datasets for run, why in by_data[data].left_out]
    counted = [r for s in by_data.values() for group in s.at_budget.values() for r in group]
    paths = {
        "contrasts.png": figures.save(contrasts_figure(protocol, contrasts), out / "contrasts.png"),
        "pilot.png": pilot_figure(protocol, by_data, out / "pilot.png"),
        "quality_vs_artifacts.png": figures.quality_vs_artifacts(
            counted, out / "quality_vs_artifacts.png", x_key="test/lpef2", y_key=protocol.endpoint
        ),
    }
    md = [
        "# The confirmatory upsampling study",
        "",
        f"Under the protocol registered {protocol.registered} ([protocol.md](../protocol.md)). "
        f"{len(counted)} runs at the budgets counted; {sum(len(s.pilot) for s in by_data.values())} pilot runs; "
        f"{len(left_out)} runs left out.",
        "",
        *primary_section(protocol, contrasts),
        *pilot_section(protocol, by_data),
        *budget_section(protocol, [budget_check(protocol, d, by_data[d]) for d in protocol.datasets]),
        "## Seeds",
        "",
        *sd_lines(protocol, by_data),
        "## Exploratory",
        "",
        "Estimates with unadjusted 95% intervals over seeds; no verdicts.",
        "",
        *exploratory_contrasts(protocol, by_data),
        *phase_section(protocol, by_data),
        *per_class_section(protocol, by_data),
        *measures_section(protocol, by_data),
        "![Test Dice against the local periodic energy of the test logits, per run](quality_vs_artifacts.png)",
        "",
    ]
    if left_out:
        md += [
            "## Runs left out",
            "",
            *table(
                ["dataset", "mode", "seed", "why"], [[r.data or "", r.mode, str(r.seed), why] for r, why in left_out]
            ),
            "",
        ]
    paths["report.md"] = out / "report.md"
    paths["report.md"].write_text("\n".join(md))
    return paths
