"""Each mode at its best learning rate, chosen on validation and reported on test; comparisons against the
reference mode: the paired difference with its 95% interval, simultaneous intervals (Bonferroni over the
report's comparisons) judged by the protocol's verdict rule (report/protocol.py), Holm's p, and the seeds a
decision needs. Exploratory: a sweep's modes and rates are whatever it ran; the confirmatory study is
report/confirmatory.py's.

Shared by the per-sweep report (build.py) and the cross-dataset summary (across.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from unet_upsampling.report.protocol import verdict as interval_verdict
from unet_upsampling.report.runs import Run
from unet_upsampling.report.stats import PairedTest, finite, holm, mean_interval, paired_test, seeds_needed
from unet_upsampling.report.tables import MIN_SEEDS, fmt, fmt_interval, fmt_p, per_seed, table

SELECT_KEY = "val/dice"  # the learning rate (and, in training, the checkpoint) is chosen on this
ALPHA = 0.05
DEFAULT_MARGIN = 0.01  # Dice: a difference whose simultaneous interval lies within ±margin is "level"
POWER_DELTAS = (0.01, 0.005)


@dataclass
class Selection:
    """Each mode's runs at its chosen learning rate, the mean validation Dice per (mode, lr), and the outcome key:
    test/dice when every selected run has it, else val/dice (then the outcome is not held out)."""

    groups: dict[str, list[Run]]
    by_lr: dict[str, dict[float | None, tuple[float, int]]]
    chosen: dict[str, float | None]
    outcome: str

    @property
    def held_out(self) -> bool:
        return self.outcome.startswith("test/")

    @property
    def swept(self) -> bool:
        return any(len(lrs) > 1 for lrs in self.by_lr.values())


def select(groups: dict[str, list[Run]]) -> Selection:
    """Per mode, the learning rate with the highest mean ``val/dice`` over its seeds (runs without a recorded lr
    form one group); the outcome is ``test/dice`` if every selected run has a finite one, else ``val/dice``."""
    chosen_groups, by_lr, chosen = {}, {}, {}
    for mode, group in groups.items():
        runs_at: dict[float | None, list[Run]] = defaultdict(list)
        for run in group:
            runs_at[run.lr].append(run)
        by_lr[mode] = {}
        for lr, runs in runs_at.items():
            values = finite([r.metrics.get(SELECT_KEY) for r in runs])
            by_lr[mode][lr] = (float(values.mean()) if values.size else np.nan, len(values))
        chosen[mode] = max(by_lr[mode], key=lambda lr: np.nan_to_num(by_lr[mode][lr][0], nan=-np.inf))
        chosen_groups[mode] = runs_at[chosen[mode]]
    selected = [r for g in chosen_groups.values() for r in g]
    has_test = bool(selected) and all(finite([r.metrics.get("test/dice")]).size for r in selected)
    return Selection(chosen_groups, by_lr, chosen, "test/dice" if has_test else "val/dice")


def selection_lines(selection: Selection) -> list[str]:
    """What the comparisons are made on: the outcome, whether it is held out, and the learning rates."""
    lines = [
        f"Outcome: `{selection.outcome}`"
        + (
            ", on the test split; checkpoints and learning rates were chosen on `val/dice`, so the reported "
            "numbers are on data nothing was chosen on."
            if selection.held_out
            else ", because not every run holds a `test/dice` (a study without a test split): the reported Dice is "
            "that of the checkpoint chosen on the same validation images, so it is optimistic and not held out."
        ),
        "",
    ]
    if selection.swept:
        lrs = sorted({lr for by in selection.by_lr.values() for lr in by if lr is not None})
        rows = [[mode, *(lr_cell(selection, mode, lr) for lr in lrs)] for mode in selection.by_lr]
        lines += [
            "Each mode is compared at its own learning rate: the one with the highest mean `val/dice` over its "
            "seeds (bold).",
            "",
            *table(["mode", *(f"lr {lr:g}" for lr in lrs)], rows),
            "",
        ]
    return lines


def lr_cell(selection: Selection, mode: str, lr: float) -> str:
    """Mean val/dice (n) of a mode at one learning rate, bold where it was chosen; empty where not run."""
    if lr not in selection.by_lr[mode]:
        return ""
    mean, n = selection.by_lr[mode][lr]
    mark = "**" if lr == selection.chosen[mode] else ""
    return f"{mark}{fmt(mean)} (n={n}){mark}"


@dataclass
class Comparison:
    """One mode against the reference on one dataset, on the outcome key; ``low`` and ``high`` bound the
    simultaneous interval over the comparisons ``correct`` was given (its family)."""

    dataset: str
    mode: str
    test: PairedTest
    p_holm: float = np.nan
    low: float = np.nan
    high: float = np.nan


def compare(selection: Selection, reference: str, dataset: str = "") -> list[Comparison]:
    """Every mode but the reference: the paired difference by seed (each at its chosen lr) and the paired t-test."""
    groups, key = selection.groups, selection.outcome
    if reference not in groups:
        return []
    return [
        Comparison(dataset, mode, paired_test(per_seed(group, key), per_seed(groups[reference], key)))
        for mode, group in groups.items()
        if mode != reference
    ]


def correct(comparisons: list[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """One family: Holm's p over the comparisons' paired t-tests, and each one's interval at 1 - alpha / m
    (Bonferroni: simultaneous 1 - alpha over the m comparisons), in place."""
    level = 1 - alpha / max(1, len(comparisons))
    for comparison, adjusted in zip(comparisons, holm([c.test.p for c in comparisons]), strict=True):
        _, comparison.low, comparison.high = mean_interval(comparison.test.differences, level)
        comparison.p_holm = float(adjusted)
    return comparisons


def verdict(c: Comparison, margin: float) -> str:
    """The protocol's rule on the simultaneous interval; no interval below MIN_SEEDS seeds."""
    if c.test.n < MIN_SEEDS:
        return f"too few seeds (n = {c.test.n} < {MIN_SEEDS})"
    return interval_verdict(c.low, c.high, margin)


def difference_cell(mean: float, low: float, high: float, n: int) -> str:
    """mean [low, high], or the mean alone below MIN_SEEDS seeds, saying so."""
    return fmt_interval(mean, low, high) if n >= MIN_SEEDS else f"{fmt(mean)} (no interval below {MIN_SEEDS} seeds)"


def comparison_table(comparisons: list[Comparison], reference: str, margin: float, datasets: bool) -> list[str]:
    """Rows (dataset,) mode: paired Δ [95%], [simultaneous 95%], n, p, Holm p, verdict."""
    header = [
        *(["dataset"] if datasets else []),
        "mode",
        f"Δ vs {reference} [95%]",
        "[simultaneous 95%]",
        "n",
        "p (paired t)",
        "p Holm",
        "verdict",
    ]
    rows = [
        [
            *([c.dataset] if datasets else []),
            c.mode,
            difference_cell(c.test.mean, c.test.low, c.test.high, c.test.n),
            difference_cell(c.test.mean, c.low, c.high, c.test.n),
            str(c.test.n),
            fmt_p(c.test.p),
            fmt_p(c.p_holm),
            verdict(c, margin),
        ]
        for c in comparisons
    ]
    return table(header, rows)


def comparison_notes(family: str, margin: float, swept: bool) -> str:
    """What the comparison table shows; ``swept``: the study ran several learning rates (each mode at its chosen
    one), else each mode at the one rate it ran."""
    rates = "each mode at its chosen learning rate" if swept else "every mode at the one learning rate it ran"
    return (
        f"Paired by seed, {rates}; exploratory. The simultaneous intervals hold together "
        f"at 95% over {family} (Bonferroni); the verdict reads them with the confirmatory protocol's rule "
        f"(docs/study/protocol.md): worse or better where the interval excludes 0, level where it lies within "
        f"±{fmt(margin)} Dice, non-inferior where it lies above -{fmt(margin)}, else not resolved. `p Holm`: Holm's "
        f"step-down correction over the same family. Below {MIN_SEEDS} seeds no interval is given."
    )


def power_table(rows: list[tuple[str, float]]) -> list[str]:
    """Rows (label, paired SD): the seeds a two-sided paired t-test (alpha 0.05, power 0.8) needs per delta; none
    from an SD of fewer than MIN_SEEDS seeds (the caller passes NaN: n/a)."""
    header = ["", "paired SD", *(f"seeds for {d:g}" for d in POWER_DELTAS)]
    body = [[label, fmt(sd), *(fmt(seeds_needed(sd, d)) for d in POWER_DELTAS)] for label, sd in rows]
    return table(header, body)


POWER_NOTE = (
    "Seeds needed to detect a paired Dice difference of the given size with a two-sided paired t-test at alpha "
    "0.05 and power 0.8, at the observed SD of the per-seed differences (statsmodels' TTestPower), for one "
    "comparison: a family of m comparisons corrected by Bonferroni needs more (docs/study/protocol.md). An SD from "
    "a few seeds is itself uncertain; read these as orders of magnitude."
)


def rms_sd(comparisons: list[Comparison]) -> float:
    """The root mean square of the comparisons' paired SDs (of MIN_SEEDS seeds or more): one SD for a dataset."""
    sds = finite([c.test.sd for c in comparisons if c.test.n >= MIN_SEEDS])
    return float(np.sqrt(np.mean(sds**2))) if sds.size else np.nan


def class_indices(groups: dict[str, list[Run]], prefix: str) -> list[int]:
    stem = f"{prefix}dice_c"
    return sorted(
        {
            int(k[len(stem) :])
            for g in groups.values()
            for r in g
            for k in r.metrics
            if k.startswith(stem) and k[len(stem) :].isdigit()
        }
    )


def class_tables(selection: Selection, reference: str) -> list[str]:
    """Dice per class on the outcome split: mean [95%] per mode, and each mode's paired Δ to the reference per class
    (uncorrected p: the rare classes are where modes differ most, and where a few seeds say least)."""
    prefix = selection.outcome.split("/")[0] + "/"
    indices = class_indices(selection.groups, prefix)
    if not indices:
        return []
    groups = selection.groups
    names = next((r.class_names for g in groups.values() for r in g if r.class_names), None) or []
    labels = [names[i] if i < len(names) else f"c{i}" for i in indices]
    means = [
        [mode, *(fmt_interval(*mean_interval([r.metrics.get(f"{prefix}dice_c{i}") for r in g])) for i in indices)]
        for mode, g in groups.items()
    ]
    lines = [f"Mean `{prefix}dice_c<i>` [95%]:", "", *table(["mode", *labels], means), ""]
    if reference in groups:
        deltas = []
        for mode, g in groups.items():
            if mode == reference:
                continue
            cells = []
            for i in indices:
                key = f"{prefix}dice_c{i}"
                t = paired_test(per_seed(g, key), per_seed(groups[reference], key))
                cells.append(f"{fmt_interval(t.mean, t.low, t.high)} (p {fmt_p(t.p)})")
            deltas.append([mode, *cells])
        lines += [
            f"Paired Δ per class vs {reference} [95%] (uncorrected p: exploratory):",
            "",
            *table(["mode", *labels], deltas),
            "",
        ]
    return lines
