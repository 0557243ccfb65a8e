"""The ``brisque`` assessor: no-reference technical quality of the received image, on the 0-10 scale.

BRISQUE (Mittal, Moorthy & Bovik 2012, "No-Reference Image Quality Assessment in the Spatial
Domain", IEEE TIP 21(12)) fits generalised-Gaussian models to the mean-subtracted,
contrast-normalised luminance of an image and its pairwise products at two scales, and maps
the 36 features to a quality score with an SVR trained on the LIVE database (the model ships
with the ``brisque`` package). It sees the image only: it judges naturalness/distortion (noise,
blur, blockiness, corruption), not whether the picture matches the prompt (the prompt is ignored).

Score mapping
    BRISQUE is about 0 (best) to 100 (worst); values slightly outside occur. The 0-10 score is
    ``clip(10 - brisque / 10, 0, 10)``: linear, 0 -> 10, 50 -> 5, >= 100 -> 0.

Received bytes that no longer decode score 0 (``decodable=False``, ``damage=nan``). Decodable
ones also get ``damage = 1 - SSIM`` against the image as sent (:func:`sim.assessment.fidelity.ssim`)
for the trace. A picture on which BRISQUE is undefined (e.g. a perfectly flat image: its
normalised coefficients are all zero) scores 0 with ``failed=True`` and the reason in ``detail``.

Small images
    BRISQUE's 7x7 local statistics at full and half resolution need some room: images whose
    shorter side is below :data:`MIN_SIDE` (32 px) are upscaled (bicubic, aspect kept) to that
    side first. Upscaling smooths the picture, so such images score somewhat lower than they
    would at full size; ``detail`` says when it happened.

Compatibility with numpy 2 (``brisque`` 0.2)
    ``BRISQUE.score`` fails under numpy >= 2 with "only 0-dimensional arrays can be converted to
    Python scalars": its ``mean_squares_sum`` divides by ``filtered_values.shape`` (a tuple), so
    the fitted sigmas come out as 1-element *arrays*, the feature vector is an object array of
    such arrays, and ``scale_features`` then calls ``float()`` on them, which numpy 2 refuses
    (numpy 1.25 only deprecated it). We do not edit site-packages: :class:`_Brisque` subclasses
    the package's ``BRISQUE`` and flattens the features to a plain float64 vector right after
    the package computes them (same values, now true scalars), so its own scaling and SVR
    prediction run unchanged. It also computes the features once (``BRISQUE.score`` computes the
    full-scale MSCN coefficients twice and discards one copy).
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

from sim.assessment.base import Assessment
from sim.assessment.fidelity import ssim
from sim.generation.base import GeneratedImage
from sim.generation.render import decode_image_checked

#: Shorter image side below which images are upscaled before BRISQUE.
MIN_SIDE = 32


def score_of_brisque(value: float) -> float:
    """The 0-10 score of a BRISQUE value: ``clip(10 - value / 10, 0, 10)``.

    >>> score_of_brisque(0.0), score_of_brisque(35.0), score_of_brisque(120.0), score_of_brisque(-3.0)
    (10.0, 6.5, 0.0, 10.0)
    """
    return float(min(max(10.0 - float(value) / 10.0, 0.0), 10.0))


@lru_cache(maxsize=1)
def _model():
    """The package's BRISQUE with its shipped SVR model (loaded once), made numpy-2 safe."""
    try:
        import cv2  # noqa: F401  (brisque needs OpenCV; say so clearly)
    except ImportError:
        raise ImportError(
            "the brisque assessor needs OpenCV: pip install opencv-python-headless brisque"
        ) from None
    try:
        from brisque import BRISQUE
    except ImportError as exc:
        raise ImportError(f"the brisque assessor needs the brisque package ({exc}): pip install brisque") from None

    class _Brisque(BRISQUE):
        """``brisque.BRISQUE`` with its features flattened to float64 (see the module docstring)."""

        def calculate_brisque_features(self, image, kernel_size=7, sigma=7 / 6):
            raw = super().calculate_brisque_features(image, kernel_size=kernel_size, sigma=sigma)
            return np.array([np.asarray(f, dtype=np.float64).reshape(-1)[0] for f in raw], dtype=np.float64)

        def features(self, gray: np.ndarray) -> np.ndarray:
            import cv2

            full = self.calculate_brisque_features(gray, kernel_size=7, sigma=7 / 6)
            half = cv2.resize(gray, None, fx=1 / 2, fy=1 / 2, interpolation=cv2.INTER_CUBIC)
            return np.concatenate((full, self.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)))

    return _Brisque(url=False)


_LOCK = threading.Lock()  # libsvm's prediction goes through shared C buffers


def _gray(pixels: np.ndarray) -> np.ndarray:
    """Luminance in [0, 1] as the package computes it (``skimage.color.rgb2gray``)."""
    import skimage.color

    return skimage.color.rgb2gray(np.asarray(pixels)[..., :3])


def brisque_value(pixels: np.ndarray) -> tuple[float, bool]:
    """``(BRISQUE value, upscaled?)`` of an HxWx3 uint8 image (lower is better; NaN if undefined).

    Images with a side below :data:`MIN_SIDE` are upscaled first (bicubic, aspect kept).
    """
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] < 3 or arr.dtype != np.uint8:
        raise ValueError(f"pixels must be an HxWx3 uint8 array, got shape {arr.shape} dtype {arr.dtype}")
    h, w = arr.shape[:2]
    upscaled = min(h, w) < MIN_SIDE
    if upscaled:
        from PIL import Image

        k = MIN_SIDE / min(h, w)
        size = (max(MIN_SIDE, round(w * k)), max(MIN_SIDE, round(h * k)))
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., :3])).resize(size, Image.Resampling.BICUBIC))
    model = _model()
    gray = _gray(arr)
    with np.errstate(all="ignore"):
        try:
            features = model.features(gray)
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return math.nan, upscaled
    if not np.all(np.isfinite(features)):
        return math.nan, upscaled
    with _LOCK:
        value = float(model.calculate_image_quality_score(features))
    return value, upscaled


class BrisqueAssessor:
    """Assessor backend ``brisque`` (see the module docstring)."""

    name = "brisque"

    def __init__(self) -> None:
        _model()  # fail at construction, with a clear message, if OpenCV/brisque are missing

    def score_pixels(self, pixels: np.ndarray) -> tuple[float, str, bool]:
        """``(0-10 score, detail, failed)`` of a decoded image."""
        value, upscaled = brisque_value(pixels)
        note = f" (upscaled to {MIN_SIDE} px)" if upscaled else ""
        if not math.isfinite(value):
            return 0.0, f"BRISQUE undefined for this image (flat or degenerate statistics){note}", True
        return score_of_brisque(value), f"brisque={value:.2f}{note}", False

    def assess(self, sent: GeneratedImage, received: bytes, prompt: str, user_id: int | None = None) -> Assessment:
        """Score the received image's technical quality (``prompt`` and ``user_id`` are not used)."""
        data = bytes(received)
        if data == sent.data:
            pixels, damage = sent.pixels, 0.0
        else:
            pixels, why = decode_image_checked(data, sent.format, sent.pixels.shape)
            if pixels is None:
                return Assessment(
                    score=0.0, decodable=False, damage=math.nan, detail=f"undecodable: {why}", assessor=self.name
                )
            damage = 1.0 - ssim(sent.pixels, pixels)
        score, detail, failed = self.score_pixels(pixels)
        return Assessment(
            score=score, decodable=True, damage=float(damage), detail=detail, failed=failed, assessor=self.name
        )


__all__ = ["MIN_SIDE", "BrisqueAssessor", "brisque_value", "score_of_brisque"]
