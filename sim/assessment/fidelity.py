"""The offline, fidelity-aware assessor: generation quality times what survived the channel.

A real user (or a vision-LLM standing in for one) judges two things at once: how
good the generated picture is, and how much of it arrived. Offline, the first is
known to the backend (the surrogate draws it from the quality model, the cache
stores it: ``GeneratedImage.generation_score``) and the second is measured on the
real received bytes:

1. decode the received bytes with the image's codec
   (:func:`sim.generation.render.decode_image`); bytes that no longer decode score
   0 (``decodable=False``, ``damage=nan``, ``detail`` says why);
2. ``ssim`` = SSIM (Wang et al. 2004; scikit-image, 7x7 window, ``data_range=255``)
   between the image as sent (``sent.pixels``: what an error-free link delivers)
   and the decoded image, on the luma channel (ITU-R BT.601 weights) at full
   resolution; ``damage = 1 - ssim``;
3. ``score = generation_score * retention(ssim)`` with
   ``retention(ssim) = clip(ssim, 0, 1) ** gamma`` (``ssim_gamma``, default 2).

Why a power of SSIM. Subjective quality is a monotone but strongly compressive
function of SSIM near 1: in the LIVE image-quality study that SSIM was validated on
(Wang et al. 2004, IEEE TIP 13(4), Fig. 9; Sheikh et al. 2006), images go from
"excellent" to "bad" while MSSIM falls only from 1 to about 0.5-0.6, so score
points are lost faster than SSIM points. ``ssim ** 2`` keeps an intact image at its
generation score, costs a barely visible defect little (SSIM 0.98 -> 96 %), and a
clearly broken one most of its score (SSIM 0.7 -> 49 %, 0.5 -> 25 %). The exponent
is a documented modelling choice, not a fit; ``gamma = 1`` scores SSIM linearly.
Luma rather than RGB: SSIM was defined on luminance, and on these images the luma
SSIM tracks the RGB one closely (correlation 0.998 on damaged JPEGs) at a fifth of
the cost (about 7 ms against 35 ms per 256 px image on one core).

>>> import numpy as np
>>> from sim.generation.base import GeneratedImage
>>> from sim.generation.render import encode_image
>>> px = np.full((32, 32, 3), 120, np.uint8)
>>> sent = GeneratedImage(encode_image(px, "raw"), "raw", px, seed=0, generation_time_s=1.0, generation_score=8.0)
>>> FidelityAssessor().assess(sent, sent.data, "A beach with a boat").score
8.0
>>> v = FidelityAssessor().assess(sent, b"RGB9" + sent.data[4:], "A beach with a boat")
>>> (v.score, v.decodable)
(0.0, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import uniform_filter1d
from skimage.metrics import structural_similarity

from sim.assessment.base import Assessment
from sim.generation.base import GeneratedImage
from sim.generation.render import decode_image_checked

#: ITU-R BT.601 luma weights.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Default exponent of the retention function ``ssim ** gamma``.
DEFAULT_SSIM_GAMMA = 2.0


def luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma (float32, 0-255) of an HxWx3 image."""
    return np.asarray(pixels, dtype=np.float32) @ _LUMA


def ssim(reference: np.ndarray, received: np.ndarray) -> float:
    """Luma SSIM of two HxWx3 uint8 images (scikit-image, 7x7 window, data range 255).

    The local SSIM of a window where both images agree is 1, so only the rows near rows that differ are
    computed (:func:`_banded_ssim`): a JPEG with restart markers that lost a few bits differs in a few
    16-pixel bands, and the mean equals the whole-image computation to float32 rounding.
    """
    reference, received = np.asarray(reference), np.asarray(received)
    if min(reference.shape[:2]) < 7:  # too small for the 7x7 window: compare with the largest odd window
        a, b = luma(reference), luma(received)
        win = max(3, min(a.shape) - (1 - min(a.shape) % 2))
        return float(structural_similarity(a, b, data_range=255.0, win_size=win))
    return _banded_ssim(reference, received, win=7)


#: scikit-image's SSIM constants (``K1``, ``K2``) at ``data_range`` 255.
_C1, _C2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2


def _banded_ssim(reference: np.ndarray, received: np.ndarray, win: int) -> float:
    """Mean luma SSIM over the centres scikit-image averages (``pad`` = win // 2 cropped on every side) of two
    HxWx3 images, computing the local SSIM only in slabs of rows around the rows where their lumas differ;
    elsewhere it is 1. Luma is computed only on those rows (it is per pixel)."""
    height, width = reference.shape[:2]
    pad = (win - 1) // 2
    rows = np.flatnonzero((reference != received).any(axis=(1, 2)))  # rows whose pixels differ
    if rows.size:  # of those, the rows whose luma differs (equal pixels have equal luma)
        rows = rows[(luma(reference[rows]) != luma(received[rows])).any(axis=1)]
    if rows.size == 0:
        return 1.0
    # centres whose window touches a differing row: rows [r - pad, r + pad]; a slab computed with 2 pad rows
    # of context either side gives them exactly (the slab's own border reflection reaches pad rows only)
    starts = np.maximum(rows - 2 * pad, 0)
    ends = np.minimum(rows + 2 * pad + 1, height)
    breaks = np.flatnonzero(starts[1:] > ends[:-1]) + 1
    slabs = list(zip(starts[np.r_[0, breaks]].tolist(), ends[np.r_[breaks - 1, rows.size - 1]].tolist()))
    if sum(e - s for s, e in slabs) > height // 2:  # most of the image: one pass is cheaper
        return float(structural_similarity(luma(reference), luma(received), data_range=255.0, win_size=win))
    rows_kept = height - 2 * pad  # the centre rows scikit-image averages over: [pad, height - pad)
    total = float(rows_kept * (width - 2 * pad))
    changed_sum, changed_count = 0.0, 0
    for s0, s1 in slabs:
        # exact centres of this slab: away from its edges unless the edge is the image's own
        lo = max(s0 + (pad if s0 > 0 else 0), pad)
        hi = min(s1 - (pad if s1 < height else 0), height - pad)
        if hi > lo:
            block = _local_ssim(luma(reference[s0:s1]), luma(received[s0:s1]), win, lo - s0, hi - s0)
            changed_sum += float(block.astype(np.float64).sum())
            changed_count += block.size
    return (total - changed_count + changed_sum) / total


def _local_ssim(a: np.ndarray, b: np.ndarray, win: int, lo: int, hi: int) -> np.ndarray:
    """scikit-image's local SSIM map of float32 ``a`` and ``b`` (``structural_similarity(a, b, data_range=255,
    win_size=win, full=True)[1]``, the same operations in the same order, so the same bits) at rows
    ``[lo, hi)`` and columns ``[pad, width - pad)`` only: its uniform filter runs down the columns over all the
    rows and then along the rows wanted alone (each row's pass is its own), and the formula on those centres."""
    pad = (win - 1) // 2
    cols = slice(pad, a.shape[1] - pad)

    def mean_filter(x: np.ndarray) -> np.ndarray:  # scipy's uniform_filter: axis 0, then axis 1 on its output
        down = uniform_filter1d(x, win, axis=0)[lo:hi]
        return uniform_filter1d(down, win, axis=1, output=down)[:, cols]

    ux, uy = mean_filter(a), mean_filter(b)
    uxx, uyy, uxy = mean_filter(a * a), mean_filter(b * b), mean_filter(a * b)
    cov_norm = win**2 / (win**2 - 1)  # sample covariance
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    a1, a2, b1, b2 = (2 * ux * uy + _C1, 2 * vxy + _C2, ux**2 + uy**2 + _C1, vx + vy + _C2)
    return (a1 * a2) / (b1 * b2)


def retention_of_ssim(value: float, gamma: float = DEFAULT_SSIM_GAMMA) -> float:
    """Share of the generation score kept at a given SSIM: ``clip(ssim, 0, 1) ** gamma``.

    >>> retention_of_ssim(1.0), retention_of_ssim(0.5), retention_of_ssim(-0.2)
    (1.0, 0.25, 0.0)
    """
    return float(min(max(value, 0.0), 1.0) ** gamma)


class FidelityAssessor:
    """Score = generation score x ``retention(SSIM(sent, received))``; 0 if undecodable.

    Needs a generator that knows each image's generation quality (``surrogate`` or
    ``cache``); ``sent.pixels`` must be the image as an error-free link delivers it
    (the decoded transmitted bytes; the surrogate sets it so). Never raises on
    corrupt bytes.
    """

    name = "fidelity"

    def __init__(self, ssim_gamma: float = DEFAULT_SSIM_GAMMA):
        gamma = float(ssim_gamma)
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"ssim_gamma must be a finite number > 0, got {ssim_gamma!r}")
        self.ssim_gamma = gamma

    def assess(self, sent: GeneratedImage, received: bytes, prompt: str, user_id: int | None = None) -> Assessment:
        g = sent.generation_score
        if g is None:
            raise TypeError(
                "the fidelity assessor needs a generation backend that knows each image's generation "
                "quality (surrogate or cache); this image has generation_score=None (a real model?). "
                "Use an assessor that looks at the image itself (llm, clip)."
            )
        g = float(g)
        if bytes(received) == sent.data:
            return Assessment(score=g, decodable=True, damage=0.0, detail="received intact", assessor=self.name)
        pixels, why = decode_image_checked(received, sent.format, sent.pixels.shape)
        if pixels is None:
            return Assessment(score=0.0, decodable=False, damage=math.nan, detail=f"undecodable: {why}", assessor=self.name)
        value = ssim(sent.pixels, pixels)
        score = min(max(g * retention_of_ssim(value, self.ssim_gamma), 0.0), 10.0)
        return Assessment(score=score, decodable=True, damage=1.0 - value, detail=f"ssim={value:.4f}", assessor=self.name)


# --- Monte Carlo of the damage the channel does (used by scripts/fit_damage_model.py) ------


@dataclass(frozen=True)
class DamageTrials:
    """Outcomes of sending images through a binary symmetric channel, one entry per trial."""

    #: Image format of every trial.
    image_format: str
    ber: np.ndarray
    #: Bits of the encoded image.
    n_bits: np.ndarray
    #: Expected bit errors, ``ber * n_bits``.
    errors: np.ndarray
    #: Bits actually flipped.
    flipped: np.ndarray
    decodable: np.ndarray
    #: Received score / generation score (0 when undecodable).
    ratio: np.ndarray
    #: Prompt complexity of the image's prompt.
    complexity: np.ndarray


def damage_trials(
    images: Sequence[GeneratedImage],
    bers: Sequence[float],
    repeats: int,
    rng: np.random.Generator,
    assessor: FidelityAssessor | None = None,
    complexities: Sequence[float] | None = None,
    flip: Callable[[bytes, float, np.random.Generator], tuple[bytes, int]] | None = None,
) -> DamageTrials:
    """Send every image ``repeats`` times at every BER through ``flip`` (default
    :func:`sim.model.channel.flip_bits`) and assess what arrives.

    The ratio ``received score / generation score`` is the share of the score kept,
    whatever the generation score (the assessor's score is proportional to it).
    """
    if flip is None:
        from sim.model.channel import flip_bits as flip
    assessor = assessor or FidelityAssessor()
    if not images:
        raise ValueError("damage_trials needs at least one image")
    formats = {im.format for im in images}
    if len(formats) != 1:
        raise ValueError(f"images must share one format, got {sorted(formats)}")
    comp = list(complexities) if complexities is not None else [math.nan] * len(images)
    if len(comp) != len(images):
        raise ValueError(f"got {len(comp)} complexities for {len(images)} images")
    rows: list[tuple[float, int, int, bool, float, float]] = []
    for image, c in zip(images, comp):
        if not image.generation_score:
            raise ValueError("damage_trials needs images with a positive generation_score")
        for ber in bers:
            for _ in range(int(repeats)):
                received, n_flipped = flip(image.data, float(ber), rng)
                verdict = assessor.assess(image, received, "")
                ratio = verdict.score / image.generation_score
                rows.append((float(ber), image.n_bits, int(n_flipped), verdict.decodable, ratio, c))
    ber_a, nb, fl, dec, ratio, cx = (np.array(col) for col in zip(*rows))
    return DamageTrials(
        image_format=formats.pop(),
        ber=ber_a.astype(float),
        n_bits=nb.astype(np.int64),
        errors=ber_a * nb,
        flipped=fl.astype(np.int64),
        decodable=dec.astype(bool),
        ratio=ratio.astype(float),
        complexity=cx.astype(float),
    )
