"""Means with Student-t intervals over seeds, paired differences and t-tests between modes, Holm's correction, the
seeds a paired t-test needs, and the test of equal means across the columns of seeds x phases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.anova import AnovaRM
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower


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
    """Holm's step-down adjusted p-values (statsmodels' ``multipletests``); NaN p-values are not tests: they stay
    NaN and do not count."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.isfinite(p)
    if tested.any():
        adjusted[tested] = multipletests(p[tested], method="holm")[1]
    return adjusted


def seeds_needed(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Seeds (pairs) a two-sided paired t-test needs to detect a mean difference ``delta`` at the paired ``sd``
    (statsmodels' ``TTestPower``, the noncentral t), rounded up; NaN when sd is not positive."""
    if not np.isfinite(sd) or sd <= 0:
        return np.nan
    return float(math.ceil(TTestPower().solve_power(effect_size=delta / sd, alpha=alpha, power=power)))


def equal_means_in_blocks(matrix: np.ndarray) -> float:
    """p of the repeated-measures F test (statsmodels' ``AnovaRM``: seeds as subjects, the columns as the levels of
    one factor) that the columns of ``matrix`` (n seeds x k phases) share one mean; seeds with a missing value are
    left out. NaN below 2 seeds or 2 columns, or without residual variance."""
    x = np.asarray(matrix, dtype=float)
    if x.ndim != 2:
        return np.nan
    x = x[np.isfinite(x).all(axis=1)]
    n, k = x.shape
    if n < 2 or k < 2 or np.allclose(x - x.mean(axis=1, keepdims=True) - x.mean(axis=0) + x.mean(), 0):
        return np.nan
    long = pd.DataFrame({"seed": np.repeat(np.arange(n), k), "phase": np.tile(np.arange(k), n), "y": x.ravel()})
    return float(AnovaRM(long, "y", "seed", within=["phase"]).fit().anova_table["Pr > F"].iloc[0])
