"""Formatting and plotting shared by the reproductions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.stats import mean_ci


def fmt_ci(m: float, lo: float, hi: float, digits: int = 3) -> str:
    """``m [lo, hi]``, or ``m`` alone when the interval is undefined (one seed).

    >>> fmt_ci(1.0, 0.5, 1.5), fmt_ci(1.0, float("nan"), float("nan")), fmt_ci(float("nan"), 0, 0)
    ('1.000 [0.500, 1.500]', '1.000', 'n/a')
    """
    if not np.isfinite(m):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Lay out, write (130 dpi, creating the folder) and close a figure of the reproductions."""
    from pathlib import Path

    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    pyplot().close(fig)


def plot_mean_ci(ax, frame: pd.DataFrame, x: str, y: str, color: str, label: str) -> None:
    """Mean of ``y`` over the rows at each ``x`` (one per seed), with its 95% CI as a band."""
    stats = [(value, *mean_ci(group[y].to_numpy(float))) for value, group in frame.groupby(x)]
    xs, m, lo, hi = (np.array(v, dtype=float) for v in zip(*stats))
    ax.plot(xs, m, color=color, label=label)
    ax.fill_between(xs, np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m), color=color, alpha=0.2)


def verdict(low: float, high: float, null: float = 0.0) -> str:
    """A claim of "more than ``null``" judged by a 95% CI ``[low, high]`` of ours.

    >>> verdict(0.1, 0.3), verdict(-0.1, 0.3), verdict(0.5, 0.9, null=1.0)
    ('reproduced in direction', 'not reproduced: no significant difference', 'contradicted')
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "too few seeds to tell"
    if low > null:
        return "reproduced in direction"
    if high < null:
        return "contradicted"
    return "not reproduced: no significant difference"


def magnitude_verdict(low: float, high: float, paper: float, unit: str = "") -> str:
    """Is the paper's value inside our 95% CI ``[low, high]`` (not only its direction)?

    >>> magnitude_verdict(1.05, 4.2, 6.3, "x"), magnitude_verdict(0.44, 1.18, 0.8, "x"), magnitude_verdict(-5, 20, 67.8, "%")
    ("the paper's 6.3x is above our interval", "the paper's 0.8x is inside our interval", "the paper's 67.8% is above our interval")
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "too few seeds to tell"
    value = f"{paper:g}{unit}"
    if paper > high:
        return f"the paper's {value} is above our interval"
    if paper < low:
        return f"the paper's {value} is below our interval"
    return f"the paper's {value} is inside our interval"


def wall_time_sentence(meta: dict) -> str:
    """How long a reproduction took, from its ``run.json``."""
    quick = " (quick mode: smoke check, not the figures)" if meta["quick"] else ""
    return f"Wall time {meta['total_s'] / 60:.1f} min with {meta['jobs']} processes{quick}."
