"""Means with Student-t intervals over seeds, and paired differences between modes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): mean +- t_{(1+level)/2, n-1} s / sqrt(n); the interval is NaN for n < 2."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, np.nan, np.nan)
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return (mean, mean - half, mean + half)


def paired_difference(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean of a[seed] - b[seed] over the seeds both have, its interval, and that number of seeds."""
    seeds = sorted(a.keys() & b.keys())
    return (*mean_interval([a[s] - b[s] for s in seeds], level), len(seeds))
