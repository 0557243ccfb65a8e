"""Fault timelines: when a MASP, a GPU, a link or the assessor is down, and what an outage does to images.

A :class:`FaultTimeline` is the union of scheduled windows ``[start, end)`` and, optionally, random
outages of an alternating renewal process: up times exponential with mean ``mtbf_s`` (mean time
between failures), repair times exponential with mean ``mttr_s`` (mean time to repair), drawn lazily
from the timeline's own random stream as the simulation asks about later times. Overlapping or
touching windows merge, so a target is either up or down, and its windows are disjoint and ordered.

The fault rules every delivery mode uses (see ``docs/faults.md``):

* a MASP outage stops the MASP (GPUs and transmitter): an image not received when the outage starts
  is lost (reason ``masp_outage``), and no decision epoch starts while it is down;
* a GPU failure loses the image that GPU is generating (reason ``gpu_failure``); the queue goes on
  on the GPUs that are up (:func:`gpu_schedule`);
* a link blockage loses an image whose transmission overlaps it (reason ``link_blockage``);
* an assessor outage (or a failure drawn with the per-image probability) leaves an image unscored:
  it counts as an assessment failure and scores 0.

This module imports nothing from the world, the environments or the agents.
"""

from __future__ import annotations

import bisect
import heapq
import math
from typing import Iterable, Sequence

import numpy as np

#: Why an image was lost to a fault (an image delivered or damaged by bit errors has no reason).
LOSS_REASONS = ("masp_outage", "gpu_failure", "link_blockage")


class FaultTimeline:
    """Disjoint, ordered down windows ``[start, end)`` of one target (module docstring).

    ``scheduled``: ``(start_s, end_s)`` pairs; ``mtbf_s`` and ``mttr_s`` (both or neither) add random
    outages drawn from ``rng``. Each window remembers whether a random outage is part of it.
    """

    def __init__(self, scheduled: Iterable[tuple[float, float]] = (), mtbf_s: float | None = None,
                 mttr_s: float | None = None, rng: np.random.Generator | None = None):
        if (mtbf_s is None) != (mttr_s is None):
            raise ValueError("random outages need both mtbf_s and mttr_s")
        if mtbf_s is not None and (not mtbf_s > 0 or not mttr_s > 0 or rng is None):
            raise ValueError("random outages need mtbf_s > 0, mttr_s > 0 and a random generator")
        windows = sorted((float(a), float(b)) for a, b in scheduled)
        for a, b in windows:
            if not (math.isfinite(a) and math.isfinite(b) and 0 <= a < b):
                raise ValueError(f"an outage window needs 0 <= start < end (finite), got [{a}, {b})")
        self._scheduled = windows
        self._mtbf, self._mttr, self._rng = mtbf_s, mttr_s, rng
        self._random: list[tuple[float, float]] = []
        self._random_until = 0.0 if mtbf_s is not None else math.inf  # random windows known up to here
        self._clock = 0.0  # end of the last random window drawn
        self._merged: list[tuple[float, float, bool]] = []
        self._starts: list[float] = []
        self._merge()

    @property
    def empty(self) -> bool:
        """No window at all, ever."""
        return not self._scheduled and self._mtbf is None

    def _draw_until(self, t: float) -> None:
        """Draw random windows until one starts after ``t``."""
        if self._random_until > t:
            return
        while True:
            start = self._clock + float(self._rng.exponential(self._mtbf))
            end = start + float(self._rng.exponential(self._mttr))
            if end > start:
                self._random.append((start, end))
            self._clock = end
            if start > t:
                self._random_until = start
                break
        self._merge()

    def _merge(self) -> None:
        tagged = sorted([(a, b, False) for a, b in self._scheduled] + [(a, b, True) for a, b in self._random])
        merged: list[tuple[float, float, bool]] = []
        for a, b, random in tagged:
            if merged and a <= merged[-1][1]:
                lo, hi, r = merged[-1]
                merged[-1] = (lo, max(hi, b), r or random)
            else:
                merged.append((a, b, random))
        self._merged = merged
        self._starts = [w[0] for w in merged]

    def window_after(self, t: float) -> tuple[float, float, bool] | None:
        """The first window ``(start, end, random)`` that ends after ``t`` (the one holding ``t``, or the next);
        ``None`` when the target never goes down again."""
        while True:
            i = bisect.bisect_right(self._starts, t) - 1
            if i >= 0 and self._merged[i][1] > t:
                window = self._merged[i]
            else:
                window = self._merged[i + 1] if i + 1 < len(self._merged) else None
            # a window is final once the random draws reach past its end (a later draw could extend it)
            if window is None and self._random_until == math.inf:
                return None
            if window is not None and window[1] < self._random_until:
                return window
            self._draw_until(t if window is None else window[1])

    def is_down(self, t: float) -> bool:
        """The target is down at ``t``."""
        window = self.window_after(t)
        return window is not None and window[0] <= t

    def next_down_s(self, t: float) -> float:
        """When the target is next down at or after ``t`` (``t`` itself when down now; ``inf`` when never)."""
        window = self.window_after(t)
        return math.inf if window is None else max(window[0], t)

    def up_at_s(self, t: float) -> float:
        """When the target is up again: the end of the window holding ``t``, or ``t`` when it is up."""
        window = self.window_after(t)
        return window[1] if window is not None and window[0] <= t else t

    def overlaps(self, a: float, b: float) -> bool:
        """The target is down at some time of ``[a, b]``."""
        window = self.window_after(a)
        return window is not None and window[0] <= b

    def windows(self, until_s: float) -> list[tuple[float, float, bool]]:
        """Every window that starts before ``until_s``."""
        if math.isfinite(until_s):
            self.window_after(until_s)
        return [w for w in self._merged if w[0] < until_s]


def gpu_schedule(n_queued: int, t0_s: float, inference_time_s: float,
                 gpus: Sequence[FaultTimeline]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``0..n_queued-1`` queued FIFO at ``t0_s`` on GPUs that fail: ``(end_s, lost)`` per image.

    Each image takes the GPU that can start it first (a GPU is free when its last image ends and it is
    up); an image whose GPU goes down before it finishes ends at the failure, lost, and that GPU is busy
    until it is repaired. With no window on any GPU this is :func:`sim.model.service.image_done_times`
    (as absolute times). Times are absolute; an image no GPU ever starts ends at ``inf``.
    """
    ends, lost = np.full(n_queued, math.inf), np.zeros(n_queued, dtype=bool)
    free = [(gpu.up_at_s(t0_s), g) for g, gpu in enumerate(gpus)]
    heapq.heapify(free)
    for j in range(n_queued):
        while True:
            start, g = heapq.heappop(free)
            if not math.isfinite(start):
                heapq.heappush(free, (start, g))
                return ends, lost
            up_again = gpus[g].up_at_s(start)
            if up_again == start:
                break
            heapq.heappush(free, (up_again, g))
        done = start + float(inference_time_s)
        failure = gpus[g].next_down_s(start)
        if failure < done:
            ends[j], lost[j] = failure, True
            heapq.heappush(free, (gpus[g].up_at_s(failure), g))
        else:
            ends[j] = done
            heapq.heappush(free, (done, g))
    return ends, lost


def image_losses(t0_s: float, done_s: np.ndarray, arrival_s: np.ndarray, used: np.ndarray,
                 gpu_lost: np.ndarray | None = None, masp: FaultTimeline | None = None,
                 links: FaultTimeline | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The faults' toll on the images of one decision epoch taken at ``t0_s``: ``(reason, end_s)`` per image.

    ``done_s`` (when each image leaves its GPU, or when its GPU failed where ``gpu_lost``) and ``arrival_s``
    (when it reaches its user) are relative to ``t0_s``; ``used`` masks the images the decision asked for.
    ``reason`` is ``""`` for an image the faults spare, else one of :data:`LOSS_REASONS`; ``end_s`` is when
    its fate is known (its arrival, or the failure that lost it), relative to ``t0_s``. The rules (module
    docstring): the first fault to strike an image loses it; a MASP outage takes every image not received
    by its start.
    """
    reason = np.full(np.shape(done_s), "", dtype=object)
    end = np.array(arrival_s, dtype=float, copy=True)
    if gpu_lost is not None:
        hit = gpu_lost & used
        reason[hit] = "gpu_failure"
        end[hit] = np.asarray(done_s)[hit]
    if masp is not None:
        c = masp.next_down_s(t0_s) - t0_s
        hit = used & (end > c)
        reason[hit] = "masp_outage"
        end[hit] = c
    if links is not None:
        for i, j in zip(*np.nonzero(used & (reason == ""))):
            if links.overlaps(t0_s + float(done_s[i, j]), t0_s + float(arrival_s[i, j])):
                reason[i, j] = "link_blockage"
    return reason, end


__all__ = ["LOSS_REASONS", "FaultTimeline", "gpu_schedule", "image_losses"]
