"""The ``clip`` assessor: prompt-image agreement measured by a CLIP model, on the 0-10 scale.

A CLIP model (``transformers.CLIPModel`` + ``CLIPProcessor``, from ``assessor.clip.model``: a
local directory, which always loads with ``local_files_only``, or a hub id) embeds the prompt
and the image as received; their cosine similarity ``cos`` measures how well the picture shows
the prompt.

Scores
    ``clip_score = 100 * max(cos, 0)``: the CLIPScore as torchmetrics and most text-to-image
    papers report it (Hessel et al. 2021 define ``2.5 * max(cos, 0)``: the same number up to
    the factor 40, so either converts). It goes in ``detail`` together with ``cos``.

    ``score = clip(10 * (max(cos, 0) - cos_low) / (cos_high - cos_low), 0, 10)``: an affine map
    of the cosine onto the assessor's 0-10 scale, clipped. The defaults ``cos_low = 0.15``,
    ``cos_high = 0.35`` come from the range of OpenAI's CLIP ViT-B/32: good Stable Diffusion
    images of their prompt reach CLIP scores of about 30-35 (``cos`` 0.30-0.35), an image of
    something else about 15, so an unrelated image scores 0 and a very good match 10. They are
    constructor parameters because the range depends on the CLIP model: calibrate them for the
    model you use (``python -m sim calibrate``) before trusting absolute scores. (The tiny test
    CLIP built by :mod:`sim.models.tiny` has random weights: its scores are meaningless.)

What the channel did
    The received bytes are decoded with the image's codec
    (:func:`sim.generation.render.decode_image_checked`); bytes that no longer decode score 0
    (``decodable=False``, ``damage=nan``, ``detail`` says why). Otherwise ``damage = 1 - SSIM``
    between the image as sent and as received (:func:`sim.assessment.fidelity.ssim`), recorded
    for the trace; the score itself is CLIP's verdict on the received picture (CLIP is fairly
    robust to small corruptions, so damage costs score only when it changes what the picture shows).

Batching: :meth:`ClipAssessor.assess_many` scores several received images of one prompt in one
forward pass; text embeddings are cached per prompt. Inference runs under ``torch.no_grad``.
Prompts longer than CLIP's context (77 tokens) are truncated, as CLIP itself does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import numpy as np

from sim.assessment.base import Assessment
from sim.assessment.fidelity import ssim
from sim.config import ClipConfig
from sim.generation.base import GeneratedImage
from sim.generation.render import decode_image_checked
from sim.models.hub import load_pretrained, resolve_device

#: Default cosine that maps to score 0 (an unrelated image under OpenAI CLIP ViT-B/32).
DEFAULT_COS_LOW = 0.15
#: Default cosine that maps to score 10 (a very good match under OpenAI CLIP ViT-B/32).
DEFAULT_COS_HIGH = 0.35

_SETTING = "assessor.clip"


def clip_score(cos: float) -> float:
    """CLIPScore ``100 * max(cos, 0)`` (torchmetrics' convention; Hessel et al.'s is this / 40).

    >>> clip_score(0.3), clip_score(-0.1)
    (30.0, 0.0)
    """
    return 100.0 * max(float(cos), 0.0)


def score_of_cosine(cos: float, cos_low: float = DEFAULT_COS_LOW, cos_high: float = DEFAULT_COS_HIGH) -> float:
    """The 0-10 score of a CLIP cosine: ``clip(10 (max(cos, 0) - cos_low) / (cos_high - cos_low), 0, 10)``.

    >>> score_of_cosine(0.15), score_of_cosine(0.25), score_of_cosine(0.35), score_of_cosine(0.9)
    (0.0, 5.0, 10.0, 10.0)
    """
    value = 10.0 * (max(float(cos), 0.0) - cos_low) / (cos_high - cos_low)
    return float(min(max(value, 0.0), 10.0))


def _features(output):
    """Projected embeddings from ``get_*_features`` (a tensor in transformers 4, a model output in 5)."""
    pooled = getattr(output, "pooler_output", None)
    return output if pooled is None else pooled


class ClipAssessor:
    """Assessor backend ``clip`` (see the module docstring)."""

    name = "clip"

    def __init__(
        self,
        config: ClipConfig | None = None,
        cos_low: float = DEFAULT_COS_LOW,
        cos_high: float = DEFAULT_COS_HIGH,
        text_cache_size: int = 256,
    ):
        config = ClipConfig() if config is None else config
        if not isinstance(config, ClipConfig):
            raise TypeError(f"config must be a ClipConfig, got {type(config).__name__}")
        lo, hi = float(cos_low), float(cos_high)
        if not (math.isfinite(lo) and math.isfinite(hi) and -1.0 <= lo < hi <= 1.0):
            raise ValueError(f"need -1 <= cos_low < cos_high <= 1, got cos_low={cos_low!r}, cos_high={cos_high!r}")
        self.config = config
        self.cos_low, self.cos_high = lo, hi
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_cache_size = max(int(text_cache_size), 0)

        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.device = resolve_device(config.device, _SETTING)

        def load(source: str, local_files_only: bool):
            model = CLIPModel.from_pretrained(source, local_files_only=local_files_only)
            processor = CLIPProcessor.from_pretrained(source, local_files_only=local_files_only)
            return model, processor

        model, processor = load_pretrained("CLIP model", config.model, config.local_files_only, _SETTING, load)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.max_text_tokens = int(getattr(model.config.text_config, "max_position_embeddings", 77))
        self._torch = torch

    # --- embeddings ------------------------------------------------------------------------

    def text_embedding(self, prompt: str) -> np.ndarray:
        """Unit-norm CLIP text embedding of ``prompt`` (cached per prompt)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        cached = self._text_cache.get(prompt)
        if cached is not None:
            self._text_cache.move_to_end(prompt)
            return cached
        torch = self._torch
        tokens = self.processor.tokenizer(
            [prompt], padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        with torch.no_grad():
            emb = _features(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            )
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        vec = emb[0].cpu().numpy()
        vec.flags.writeable = False
        if self._text_cache_size:
            self._text_cache[prompt] = vec
            while len(self._text_cache) > self._text_cache_size:
                self._text_cache.popitem(last=False)
        return vec

    def image_embeddings(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-norm CLIP image embeddings (n x d) of HxWx3 uint8 images, in one forward pass."""
        if len(images) == 0:
            return np.zeros((0, 0), np.float32)
        torch = self._torch
        batch = self.processor.image_processor(images=[np.asarray(im) for im in images], return_tensors="pt")
        with torch.no_grad():
            emb = _features(self.model.get_image_features(pixel_values=batch["pixel_values"].to(self.device)))
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return emb.cpu().numpy()

    def cosines(self, images: Sequence[np.ndarray], prompt: str) -> np.ndarray:
        """CLIP cosine similarity of each image with ``prompt``."""
        if len(images) == 0:
            return np.zeros(0)
        return (self.image_embeddings(images) @ self.text_embedding(prompt)).astype(float)

    def score_of_cosine(self, cos: float) -> float:
        """This assessor's 0-10 score of a cosine (see :func:`score_of_cosine`)."""
        return score_of_cosine(cos, self.cos_low, self.cos_high)

    # --- the assessor seam -----------------------------------------------------------------

    def assess(self, sent: GeneratedImage, received: bytes, prompt: str, user_id: int | None = None) -> Assessment:
        """Score ``received`` (the bytes after the channel) of ``sent`` for ``prompt``."""
        return self.assess_many([sent], [received], prompt, user_id)[0]

    def assess_many(
        self,
        sent: Sequence[GeneratedImage],
        received: Sequence[bytes],
        prompt: str,
        user_id: int | None = None,
    ) -> list[Assessment]:
        """:meth:`assess` for several images of one prompt, with one CLIP forward pass."""
        if len(sent) != len(received):
            raise ValueError(f"got {len(sent)} sent images but {len(received)} received byte strings")
        verdicts: list[Assessment | None] = [None] * len(sent)
        decoded: list[tuple[int, np.ndarray, float]] = []
        for k, (image, data) in enumerate(zip(sent, received)):
            data = bytes(data)
            if data == image.data:
                decoded.append((k, image.pixels, 0.0))
                continue
            pixels, why = decode_image_checked(data, image.format, image.pixels.shape)
            if pixels is None:
                verdicts[k] = Assessment(
                    score=0.0, decodable=False, damage=math.nan, detail=f"undecodable: {why}", assessor=self.name
                )
                continue
            decoded.append((k, pixels, 1.0 - ssim(image.pixels, pixels)))
        if decoded:
            cos = self.cosines([px for _, px, _ in decoded], prompt)
            for (k, _, damage), c in zip(decoded, cos):
                verdicts[k] = Assessment(
                    score=self.score_of_cosine(c),
                    decodable=True,
                    damage=float(damage),
                    detail=f"cos={c:.4f} clip_score={clip_score(c):.2f}",
                    assessor=self.name,
                )
        return [v for v in verdicts if v is not None]


__all__ = ["DEFAULT_COS_HIGH", "DEFAULT_COS_LOW", "ClipAssessor", "clip_score", "score_of_cosine"]
