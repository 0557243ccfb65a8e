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


def _cluster_weights(clusters: ArrayLike, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cluster index of every observation, bootstrap weights (n_boot, clusters))``: each bootstrap sample
    draws as many clusters as there are, with replacement (a multinomial count per cluster)."""
    labels, index = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
    if int(n_boot) < 100:
        raise ValueError(f"n_boot must be >= 100, got {n_boot}")
    rng = np.random.default_rng(int(seed))
    weights = rng.multinomial(len(labels), np.full(len(labels), 1.0 / len(labels)), size=int(n_boot))
    return index, weights.astype(float)


def cluster_bootstrap_mean(values: ArrayLike, clusters: ArrayLike, confidence: float = 0.95, n_boot: int = 4000,
                           seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile interval from a bootstrap that resamples whole ``clusters``
    (e.g. the decisions of one prompt, or the users of one seed, together): ``(mean, low, high)``.

    >>> m, lo, hi = cluster_bootstrap_mean([1, 1, 0, 0, 1, 0], ["a", "a", "b", "b", "c", "c"])
    >>> round(m, 3), bool(lo < m < hi)
    (0.5, True)
    """
    x = np.asarray(values, dtype=float).ravel()
    index, w = _cluster_weights(clusters, n_boot, seed)
    if index.shape != x.shape:
        raise ValueError(f"values and clusters must have the same length, got {x.size} and {index.size}")
    sums, counts = np.bincount(index, weights=x), np.bincount(index).astype(float)
    boot = (w @ sums) / np.maximum(w @ counts, 1e-300)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], method="inverted_cdf")
    return float(x.mean()), float(low), float(high)


def cluster_bootstrap_ratio(numerator: ArrayLike, denominator: ArrayLike, clusters: ArrayLike,
                            confidence: float = 0.95, n_boot: int = 4000,
                            seed: int = 0) -> tuple[float, float, float, float]:
    """Ratio of means ``mean(numerator) / mean(denominator)`` over paired observations (e.g. two policies'
    successes for the same users), with a percentile interval from a bootstrap that resamples whole
    ``clusters``, and the two-sided bootstrap p-value of ``ratio = 1`` (twice the share of bootstrap ratios
    on the far side of 1, at least ``1 / n_boot``): ``(ratio, low, high, p)``.

    >>> r, lo, hi, p = cluster_bootstrap_ratio([1, 1, 1, 0] * 5, [1, 0, 0, 0] * 5, list(range(20)))
    >>> round(r, 2), bool(lo > 1), p < 0.05
    (3.0, True, True)
    """
    a = np.asarray(numerator, dtype=float).ravel()
    b = np.asarray(denominator, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    index, w = _cluster_weights(clusters, n_boot, seed)
    if index.shape != a.shape:
        raise ValueError(f"values and clusters must have the same length, got {a.size} and {index.size}")
    num, den = w @ np.bincount(index, weights=a), w @ np.bincount(index, weights=b)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = num / den
        ratio = float(a.sum() / b.sum()) if b.sum() > 0 else (math.inf if a.sum() > 0 else math.nan)
    boot = np.where(np.isnan(boot), 1.0, boot)
    alpha = (1.0 - confidence) / 2
    far = np.mean(boot <= 1.0) if ratio > 1 else np.mean(boot >= 1.0)
    p = float(min(1.0, max(2.0 * far, 1.0 / len(boot))))
    low, high = np.quantile(boot, [alpha, 1 - alpha], method="inverted_cdf")
    return ratio, float(low), float(high), p


__all__ = ["cluster_bootstrap_mean", "cluster_bootstrap_ratio", "holm_adjust", "mean_ci", "paired_difference",
           "paired_t_test"]
