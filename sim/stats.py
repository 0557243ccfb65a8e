"""Statistics shared by training, comparisons and the paper reports: means with Student-t intervals, paired differences.

No plotting here: importing it loads numpy and scipy only.

>>> m, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0]))
>>> m, round(lo, 3), round(hi, 3)
(2.0, -0.484, 4.484)
>>> d, lo, hi = paired_difference([2.0, 3.0, 4.5], [1.0, 2.0, 3.0])
>>> round(d, 3), bool(lo > 0)
(1.167, True)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import stdtr, stdtrit


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval ``(mean, low, high)``; NaNs are dropped.

    One value gives ``(value, nan, nan)``; none gives three NaNs.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    # Student-t quantile (scipy.stats.t.ppf calls the same stdtrit; scipy.stats itself takes 0.6 s to import)
    half = float(stdtrit(len(x) - 1, 0.5 + confidence / 2) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def paired_difference(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` over pairs (e.g. the same seeds) with its Student-t interval.

    Pairs where either value is NaN are dropped.
    """
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have the same length, got {x.size} and {y.size}")
    return mean_ci(x - y, confidence)


def paired_t_test(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided p-value of a paired t-test of ``mean(a - b) = 0`` (NaN pairs dropped; NaN with < 2 pairs).

    >>> round(paired_t_test([2.0, 3.0, 4.5], [1.0, 2.0, 3.0]), 4)
    0.0198
    """
    d = np.asarray(a, dtype=float).ravel() - np.asarray(b, dtype=float).ravel()
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if float(d.mean()) != 0.0 else 1.0
    t = float(d.mean()) / (sd / math.sqrt(len(d)))
    return float(2.0 * stdtr(len(d) - 1, -abs(t)))


def holm_adjust(p_values: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order.

    >>> holm_adjust([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))  # NaN p-values (too few pairs) are left out of the family
    order = ok[np.argsort(p[ok])]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


__all__ = ["holm_adjust", "mean_ci", "paired_difference", "paired_t_test"]
