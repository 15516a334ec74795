"""Means with Student-t intervals over seeds, and paired differences between modes."""

from __future__ import annotations

from collections.abc import Sequence

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


def paired_difference(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean of a[seed] - b[seed] over the seeds both have a finite value for, its interval, and that number of seeds."""
    differences = finite([a[s] - b[s] for s in sorted(a.keys() & b.keys())])
    return (*mean_interval(differences, level), len(differences))
