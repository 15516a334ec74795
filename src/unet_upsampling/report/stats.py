"""Means with Student-t intervals over seeds, paired differences and t-tests between modes, Holm's correction,
Dunnett's test, equivalence (TOST) and the seeds a paired t-test needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def finite(values: Sequence[float | None]) -> np.ndarray:
    """The values that are numbers and finite (missing metrics are None, failed ones NaN)."""
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)


def mean_interval(values: Sequence[float | None], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the finite values: mean +- t_{(1+level)/2, n-1} s / sqrt(n); interval NaN for n < 2."""
    x = finite(values)
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, np.nan, np.nan)
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return (mean, mean - half, mean + half)


def median_range(values: Sequence[float | None]) -> tuple[float, float, float]:
    """(median, min, max) of the finite values: artifact measures are skewed across seeds (one seed's
    flat_std can be 10x another's), so they are summarised by median and range, not mean and interval."""
    x = finite(values)
    return (float(np.median(x)), float(x.min()), float(x.max())) if x.size else (np.nan, np.nan, np.nan)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float, int]:
    """Mean of a[seed] - b[seed] over the seeds both have a finite value for, its 95% interval, and that number of
    seeds (``paired_test`` without the test)."""
    t = paired_test(a, b)
    return (t.mean, t.low, t.high, t.n)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison a - b over common seeds: mean [95% interval], n, SD of the differences, two-sided p of
    the paired t-test (NaN below 2 seeds) and the differences themselves."""

    mean: float
    low: float
    high: float
    n: int
    sd: float
    p: float
    differences: np.ndarray


def paired_test(a: dict[int, float], b: dict[int, float]) -> PairedTest:
    """``paired_difference`` with the paired t-test's p (``scipy.stats.ttest_rel`` on the common seeds)."""
    seeds = [s for s in sorted(a.keys() & b.keys()) if np.isfinite(a[s]) and np.isfinite(b[s])]
    x, y = np.array([a[s] for s in seeds], dtype=float), np.array([b[s] for s in seeds], dtype=float)
    mean, low, high = mean_interval(x - y)
    if len(seeds) < 2:
        return PairedTest(mean, low, high, len(seeds), np.nan, np.nan, x - y)
    sd = float((x - y).std(ddof=1))
    p = float(stats.ttest_rel(x, y).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    return PairedTest(mean, low, high, len(seeds), sd, p, x - y)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, p_(i) * (m - i + 1), made monotone, capped at 1.

    NaN p-values are not tests: they stay NaN and do not count in m.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def tost(differences: Sequence[float], margin: float) -> float:
    """Two one-sided t-tests of equivalence: p = max(p of mean > -margin, p of mean < +margin).

    p < alpha means the difference lies within ±margin at level alpha (the (1 - 2 alpha) interval inside ±margin).
    NaN below 2 values.
    """
    d = finite(differences)
    if len(d) < 2:
        return np.nan
    if d.std(ddof=1) == 0:
        return 0.0 if abs(d.mean()) < margin else 1.0
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(lower, upper))


def seeds_needed(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Seeds (pairs) a two-sided paired t-test needs to detect a mean difference ``delta`` at the paired ``sd``:
    the smallest n >= 2 with ((t_{1-alpha/2, n-1} + t_{power, n-1}) sd / delta)^2 <= n. The normal quantiles'
    n is a lower bound (t quantiles are larger), so the search starts there; NaN when sd is not positive."""
    if not np.isfinite(sd) or sd <= 0:
        return np.nan
    ratio = (sd / delta) ** 2
    n = max(2, int(np.ceil((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) ** 2 * ratio)))
    while (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) ** 2 * ratio > n:
        n += 1
    return float(n)


def dunnett(samples: dict[str, Sequence[float]], control: str) -> dict[str, float]:
    """Dunnett's many-to-one test (``scipy.stats.dunnett``): each group against ``control`` under one pooled
    variance, unpaired; the p-values already control the family-wise error over these groups. Groups with fewer
    than 2 finite values are left out; empty when fewer than one group remains or the control has < 2 values."""
    groups = {name: finite(values) for name, values in samples.items() if name != control}
    groups = {name: values for name, values in groups.items() if len(values) >= 2}
    reference = finite(samples.get(control, []))
    if not groups or len(reference) < 2:
        return {}
    result = stats.dunnett(*groups.values(), control=reference, rng=0)
    return dict(zip(groups, map(float, result.pvalue), strict=True))
