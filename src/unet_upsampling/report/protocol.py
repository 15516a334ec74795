"""The confirmatory study as docs/study/protocol.md registers it (protocol.yaml): which runs it counts, the pilot's
learning rates, the budget check, the blind SD re-estimate, and the primary contrasts with simultaneous intervals
and their verdicts. Nothing here chooses among confirmatory runs: their rates are the frozen ones, read from the
experiment config, and a run at another rate or of a pilot seed is left out with the reason."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from unet_upsampling.errors import ReportError
from unet_upsampling.report.runs import Run
from unet_upsampling.report.stats import finite, mean_interval
from unet_upsampling.report.tables import per_seed

WITHIN = " within the margin"
CLOSEST_TO = 0.003  # the pilot's tie-break: the rate closest (in log scale) to the rate of every earlier study


@dataclass(frozen=True)
class Protocol:
    """protocol.yaml's fields, and the frozen rates of its ``rates_file`` (``study_rates``)."""

    reference: str
    primary_modes: tuple[str, ...]
    datasets: tuple[str, ...]
    endpoint: str
    margin: float
    alpha: float
    budgets: dict[str, int]
    pilot_seeds: frozenset[int]
    rate_grid: tuple[float, ...]
    rate_key: str
    first_block: tuple[int, ...]
    block_size: int
    seed_cap: int
    registered: str
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    default_rate: float = 0.003

    @classmethod
    def load(cls, path: Path) -> Protocol:
        path = Path(path)
        try:
            raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            rates_file = next(
                (
                    base / raw["rates_file"]
                    for base in (Path.cwd(), *path.resolve().parents)
                    if (base / raw["rates_file"]).is_file()
                ),
                None,
            )
            if rates_file is None:
                raise ReportError(f"{path}: rates_file {raw['rates_file']} is not found above it or here")
            rates = OmegaConf.to_container(OmegaConf.load(rates_file).study_rates, resolve=True)
            return cls(
                reference=raw["reference"],
                primary_modes=tuple(raw["primary_modes"]),
                datasets=tuple(raw["datasets"]),
                endpoint=raw["endpoint"],
                margin=float(raw["margin"]),
                alpha=float(raw["alpha"]),
                budgets={k: int(v) for k, v in raw["budgets"].items()},
                pilot_seeds=frozenset(int(s) for s in raw["pilot_seeds"]),
                rate_grid=tuple(float(r) for r in raw["rate_grid"]),
                rate_key=raw["rate_key"],
                first_block=tuple(int(s) for s in raw["first_block"]),
                block_size=int(raw["block_size"]),
                seed_cap=int(raw["seed_cap"]),
                registered=str(raw["registered"]),
                rates={k: dict(v or {}) for k, v in rates.items() if k != "default"},
                default_rate=float(rates["default"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ReportError(f"{path} is not a protocol file like docs/study/protocol.yaml: {error!r}") from None

    @property
    def modes(self) -> tuple[str, ...]:
        return (self.reference, *self.primary_modes)

    @property
    def contrasts(self) -> int:
        return len(self.primary_modes) * len(self.datasets)

    @property
    def level(self) -> float:
        """Each contrast's two-sided interval level: Bonferroni over the family, simultaneous 1 - alpha."""
        return 1 - self.alpha / self.contrasts

    def frozen_rate(self, data: str, mode: str) -> float:
        return float(self.rates.get(data, {}).get(mode, self.default_rate))


@dataclass
class Sorted:
    """A dataset's runs as the protocol sees them: the pilot's, the confirmatory ones at the budget and at twice it
    (by mode), and those it leaves out, each with the reason."""

    pilot: list[Run] = field(default_factory=list)
    at_budget: dict[str, list[Run]] = field(default_factory=lambda: defaultdict(list))
    doubled: dict[str, list[Run]] = field(default_factory=lambda: defaultdict(list))
    left_out: list[tuple[Run, str]] = field(default_factory=list)


def sort_runs(protocol: Protocol, data: str, runs: list[Run]) -> Sorted:
    """The finished runs of ``data``, sorted as the protocol counts them."""
    budget, result = protocol.budgets[data], Sorted()
    for run in runs:
        if not run.ok or run.data != data:
            continue
        if run.seed in protocol.pilot_seeds:
            result.pilot.append(run)
        elif run.lr is None or not math.isclose(run.lr, protocol.frozen_rate(data, run.mode), rel_tol=1e-9):
            result.left_out.append((run, f"rate {run.lr} is not the frozen {protocol.frozen_rate(data, run.mode)}"))
        elif run.steps == budget:
            result.at_budget[run.mode].append(run)
        elif run.steps == 2 * budget:
            result.doubled[run.mode].append(run)
        else:
            result.left_out.append((run, f"{run.steps} steps, neither the budget {budget} nor twice it"))
    return result


@dataclass(frozen=True)
class PilotChoice:
    """A mode's pilot: mean ``rate_key`` (and runs) per rate, the rate the rule picks, and where it must extend."""

    mode: str
    by_rate: dict[float, tuple[float, int]]
    chosen: float
    extend: float | None  # the next rate past the grid's edge, where the chosen one is at it


def pilot_choices(protocol: Protocol, pilot: list[Run]) -> list[PilotChoice]:
    """Per mode: the rate with the highest mean ``rate_key`` over the pilot seeds (ties: the one closest to 0.003 in
    log scale); at an edge of the rates run, the next rate past it (x or / 3.33, as the grid's steps)."""
    by_mode: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in pilot:
        value = run.metrics.get(protocol.rate_key)
        if run.lr is not None and finite([value]).size:
            by_mode[run.mode][run.lr].append(value)
    choices = []
    for mode, rates in by_mode.items():
        means = {lr: (float(np.mean(v)), len(v)) for lr, v in sorted(rates.items())}
        best = max(means.values(), key=lambda m: m[0])[0]
        tied = [lr for lr, (mean, _) in means.items() if mean == best]
        chosen = min(tied, key=lambda lr: abs(math.log(lr / CLOSEST_TO)))
        edge = {min(means): min(means) / 3.33, max(means): max(means) * 3.33}
        extend = float(f"{edge[chosen]:.2g}") if chosen in edge and len(means) > 1 else None
        choices.append(PilotChoice(mode, means, chosen, extend))
    return sorted(
        choices, key=lambda c: protocol.modes.index(c.mode) if c.mode in protocol.modes else len(protocol.modes)
    )


@dataclass(frozen=True)
class Contrast:
    """One primary contrast: mode - reference on ``data``, paired by seed, at the simultaneous level."""

    data: str
    mode: str
    mean: float
    low: float
    high: float
    n: int
    sd: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def contrast(data: str, mode: str, runs: list[Run], reference: list[Run], key: str, level: float) -> Contrast:
    """d_s = key(mode, s) - key(reference, s) over the seeds both have; mean and its two-sided t interval at
    ``level``; NaN interval below 2 seeds."""
    a, b = per_seed(runs, key), per_seed(reference, key)
    d = np.array([a[s] - b[s] for s in sorted(a.keys() & b.keys())])
    mean, low, high = mean_interval(d, level)
    return Contrast(data, mode, mean, low, high, len(d), float(d.std(ddof=1)) if len(d) > 1 else np.nan)


def verdict(low: float, high: float, margin: float) -> str:
    """protocol.md's rule, the same for every interval [low, high] of a difference, first match."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "too few seeds"
    if high < 0:
        return "worse" + (
            " by more than the margin" if high < -margin else " within the margin" if low > -margin else ""
        )
    if low > 0:
        return "better" + (
            " by more than the margin" if low > margin else " within the margin" if high < margin else ""
        )
    if -margin < low and high < margin:
        return f"level within ±{margin:g}"
    if low > -margin:
        return "non-inferior"
    return "not resolved"


def primary_contrasts(protocol: Protocol, sorted_runs: dict[str, Sorted]) -> list[Contrast]:
    """The family: every primary mode against the reference on every dataset, at the budget."""
    return [
        contrast(
            data,
            mode,
            sorted_runs[data].at_budget.get(mode, []),
            sorted_runs[data].at_budget.get(protocol.reference, []),
            protocol.endpoint,
            protocol.level,
        )
        for data in protocol.datasets
        for mode in protocol.primary_modes
    ]


@dataclass(frozen=True)
class BudgetCheck:
    """The first block's gains from the budget N to 2N (``rate_key``): pooled mean, its one-sided 95% upper bound,
    pass when below the margin once all ``expected`` pairs (modes x first-block seeds) are in; the gains per mode."""

    data: str
    gains: dict[str, list[float]]
    mean: float
    upper: float
    n: int
    expected: int
    passed: bool

    @property
    def outcome(self) -> str:
        if self.n == 0:
            return "not run"
        if self.n < self.expected:
            return f"interim: {self.n} of {self.expected} pairs"
        return "passes" if self.passed else "fails"


def budget_check(protocol: Protocol, data: str, runs: Sorted) -> BudgetCheck:
    gains: dict[str, list[float]] = {}
    for mode in protocol.modes:
        at_n = {
            s: v
            for s, v in per_seed(runs.at_budget.get(mode, []), protocol.rate_key).items()
            if s in protocol.first_block
        }
        at_2n = per_seed(runs.doubled.get(mode, []), protocol.rate_key)
        gains[mode] = [at_2n[s] - at_n[s] for s in sorted(at_n.keys() & at_2n.keys())]
    pooled = np.array([g for values in gains.values() for g in values])
    expected = len(protocol.modes) * len(protocol.first_block)
    if len(pooled) < 2:
        mean = float(pooled.mean()) if len(pooled) else np.nan
        return BudgetCheck(data, gains, mean, np.nan, len(pooled), expected, False)
    upper = pooled.mean() + stats.t.ppf(0.95, len(pooled) - 1) * pooled.std(ddof=1) / np.sqrt(len(pooled))
    passed = len(pooled) == expected and upper < protocol.margin
    return BudgetCheck(data, gains, float(pooled.mean()), float(upper), len(pooled), expected, bool(passed))


def seeds_for(sd: float, protocol: Protocol, start: int = 4) -> int:
    """The smallest n >= ``start`` whose simultaneous half-width t(level, n - 1) sd / sqrt(n) is at most the
    margin, capped at the protocol's seed cap."""
    if not np.isfinite(sd):
        return protocol.seed_cap
    n = start
    while n < protocol.seed_cap and half_width(sd, n, protocol.level) > protocol.margin:
        n += 1
    return n


def half_width(sd: float, n: int, level: float) -> float:
    return float(stats.t.ppf((1 + level) / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else np.nan


def blind_sd(contrasts: list[Contrast]) -> float:
    """The root mean square of the contrasts' SDs of the per-seed differences: one SD per dataset, no effect."""
    sds = finite([c.sd for c in contrasts])
    return float(np.sqrt(np.mean(sds**2))) if sds.size else np.nan
