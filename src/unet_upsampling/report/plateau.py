"""The doubling rule per mode: has each mode reached its plateau at N steps?

``python scripts/report.py plateau SWEEP_N SWEEP_2N [--tolerance 0.005] [--modes ...] --out DIR``: per mode (and
learning rate, where a sweep holds several), ``val/dice`` of the runs at N steps against the same seeds at 2N,
paired by seed. A mode is at its plateau when the 95 % interval of the paired gain (2N - N) lies within
±tolerance: the Dice at N is then within the tolerance of that at 2N. The rule is a choice of budget, made on
validation like the checkpoint and the learning rate, so it never reads the test split.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_upsampling.errors import ReportError
from unet_upsampling.report.runs import Run, load_runs
from unet_upsampling.report.stats import PairedTest, mean_interval, paired_test
from unet_upsampling.report.tables import fmt, fmt_interval, per_seed, table

KEY = "val/dice"
DEFAULT_TOLERANCE = 0.005


@dataclass
class Doubling:
    """One mode (at one learning rate): its runs at N and at 2N steps, and the paired gain 2N - N in ``KEY``."""

    mode: str
    lr: float | None
    at_n: list[Run]
    at_2n: list[Run]

    @property
    def steps(self) -> tuple[int | None, int | None]:
        """(N, 2N): the steps most of each side's runs were given (None where unknown)."""
        return most_common_steps(self.at_n), most_common_steps(self.at_2n)

    @property
    def doubled(self) -> bool | None:
        """Whether 2N is twice N; None where a side's steps are unknown."""
        n, n2 = self.steps
        return None if n is None or n2 is None else n2 == 2 * n

    @property
    def gain(self) -> PairedTest:
        return paired_test(per_seed(self.at_2n, KEY), per_seed(self.at_n, KEY))


def most_common_steps(runs: list[Run]) -> int | None:
    steps = Counter(r.steps for r in runs if r.steps is not None)
    return steps.most_common(1)[0][0] if steps else None


def verdict(d: Doubling, tolerance: float) -> str:
    """At plateau only where the whole interval of the gain lies within ±tolerance; not where it lies beyond."""
    t = d.gain
    if d.doubled is False:
        n, n2 = d.steps
        return f"no rule: {n2} steps are not twice {n}"
    if t.n < 2:
        return "too few paired seeds"
    if -tolerance <= t.low and t.high <= tolerance:
        return f"**at plateau**: the interval lies within ±{fmt(tolerance)}"
    if t.low > tolerance:
        return f"**not at plateau**: 2N gains more than {fmt(tolerance)}"
    if t.high < -tolerance:
        return f"**lower at 2N** by more than {fmt(tolerance)}"
    if abs(t.mean) <= tolerance:
        return f"not resolved: the mean is within ±{fmt(tolerance)}, the interval reaches beyond"
    return f"not resolved: the mean is beyond ±{fmt(tolerance)}, the interval reaches within"


def doublings(sweep_n: Path, sweep_2n: Path, modes: list[str] | None = None) -> list[Doubling]:
    """The modes (and learning rates) both sweeps hold, in mode order; ``modes`` keeps those named."""
    sides = []
    for path in (sweep_n, sweep_2n):
        _, _, counted, _ = load_runs(Path(path))
        groups: dict[tuple[str, float | None], list[Run]] = defaultdict(list)
        for run in counted:
            if run.ok:
                groups[(run.mode, run.lr)].append(run)
        sides.append(groups)
    keys = sorted(sides[0].keys() & sides[1].keys(), key=lambda k: (k[0], k[1] or 0.0))
    if modes:
        unknown = sorted(set(modes) - {mode for mode, _ in keys})
        if unknown:
            held = sorted({mode for mode, _ in keys})
            raise ReportError(
                f"--modes names {', '.join(unknown)}, which the two sweeps do not both hold; they hold: "
                f"{', '.join(held) or 'no common mode'}"
            )
        keys = [k for k in keys if k[0] in modes]
    if not keys:
        raise ReportError(
            f"{sweep_n} and {sweep_2n} have no mode (at one learning rate) in common: give the same study's sweep at "
            "N and at 2N steps"
        )
    return [Doubling(mode, lr, sides[0][(mode, lr)], sides[1][(mode, lr)]) for mode, lr in keys]


def label(d: Doubling, all_: list[Doubling]) -> str:
    """The mode, and its learning rate where the sweeps hold the mode at several."""
    several = sum(other.mode == d.mode for other in all_) > 1
    return f"{d.mode} (lr {d.lr:g})" if several and d.lr is not None else d.mode


def write_plateau(
    sweep_n: Path, sweep_2n: Path, out: Path, tolerance: float = DEFAULT_TOLERANCE, modes: list[str] | None = None
) -> dict[str, Path]:
    """Writes plateau.md and plateau.csv into ``out``."""
    found = doublings(sweep_n, sweep_2n, modes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    for d in found:
        t, (n, n2), said = d.gain, d.steps, verdict(d, tolerance)
        at_n, at_2n = (mean_interval(list(per_seed(runs, KEY).values())) for runs in (d.at_n, d.at_2n))
        largest = float(np.max(np.abs(t.differences))) if t.n else np.nan
        rows.append(
            [
                label(d, found),
                str(t.n),
                "?" if n is None else str(n),
                fmt_interval(*at_n),
                "?" if n2 is None else str(n2),
                fmt_interval(*at_2n),
                fmt_interval(t.mean, t.low, t.high),
                fmt(largest),
                said,
            ]
        )
        records.append(
            {
                "mode": d.mode,
                "lr": "" if d.lr is None else d.lr,
                "seeds": t.n,
                "N": "" if n is None else n,
                "2N": "" if n2 is None else n2,
                f"{KEY} at N": at_n[0],
                f"{KEY} at 2N": at_2n[0],
                "gain": t.mean,
                "gain low": t.low,
                "gain high": t.high,
                "largest seed gain": largest,
                "tolerance": tolerance,
                "at plateau": said.startswith("**at plateau"),
            }
        )
    reached = [r for r, rec in zip(rows, records, strict=True) if rec["at plateau"]]
    md = [
        "# Has each mode reached its plateau?",
        "",
        f"Runs at N steps: {sweep_n}; at 2N: {sweep_2n}. Per mode, `{KEY}` (the best checkpoint's) paired by seed; "
        f"the gain is 2N - N with its 95% Student-t interval over the paired seeds. The doubling rule: a mode is at "
        f"its plateau at N when the whole interval lies within ±{fmt(tolerance)} (`--tolerance`), i.e. its Dice at "
        "N is within the tolerance of its Dice at 2N; a mean within the tolerance whose interval reaches beyond is "
        "not resolved (more seeds would decide it). Steps are each run's `trainer.max_steps` (in results.csv of "
        "older reports: the steps its metrics.json recorded).",
        "",
        *table(
            [
                "mode",
                "seeds",
                "N",
                f"{KEY} at N",
                "2N",
                f"{KEY} at 2N",
                "gain 2N - N [95%]",
                "largest seed gain (absolute)",
                "plateau?",
            ],
            rows,
        ),
        "",
        f"At plateau: {len(reached)} of {len(rows)}" + (f" ({', '.join(r[0] for r in reached)})." if reached else "."),
        "",
    ]
    paths = {"plateau.csv": out / "plateau.csv", "plateau.md": out / "plateau.md"}
    with paths["plateau.csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    paths["plateau.md"].write_text("\n".join(md))
    return paths
