"""Tiny, randomly initialised models with the real architectures, built offline from configs.

They exercise the real code paths of the ``diffusers`` generator and the ``clip``
assessor (``from_pretrained`` on a local directory, tokenization with the real
CLIP BPE, the full Stable Diffusion sampling loop, CLIP's two towers) without any
download. Their outputs are meaningless pictures and scores: they are for tests,
smoke runs and timing the plumbing, not for results.

``build_tiny_models(out_dir)`` writes

``out_dir/tiny-sd``
    a ``StableDiffusionPipeline``: ``UNet2DConditionModel`` (blocks 32/64, one layer
    each, cross-attention dim 32, 8 x 8 latents), ``AutoencoderKL`` with three
    downsamplings (64 x 64 images <-> 4 x 8 x 8 latents), a 2-layer ``CLIPTextModel``
    (hidden 32, the real 49 408-token vocabulary, 77 positions), the real CLIP
    tokenizer, a ``PNDMScheduler`` configured as in Stable Diffusion, no safety checker;
``out_dir/tiny-clip``
    a ``CLIPModel`` (2-layer text and vision towers, hidden 32, 32 x 32 images with
    8 x 8 patches, projection 32) and a ``CLIPProcessor`` (the real tokenizer and a
    ``CLIPImageProcessor`` resizing/cropping to 32 x 32).

Weights are a deterministic function of ``seed`` (``torch.manual_seed`` before each
model). Command line (wired by the CLI): ``python -m sim models build-tiny DIR``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sim.models.clip_vocab import CLIP_MAX_LENGTH, CLIP_VOCAB_SIZE, build_clip_tokenizer
from sim.models.hub import quiet_loading, silence_torchvision_fallback_notice

#: Image side the tiny pipeline is built for (any multiple of 8 works; the UNet is fully convolutional).
TINY_SD_IMAGE_SIZE = 64
#: Image side of the tiny CLIP's vision tower.
TINY_CLIP_IMAGE_SIZE = 32

_BOS_ID, _EOS_ID = CLIP_VOCAB_SIZE - 2, CLIP_VOCAB_SIZE - 1


def _text_config_kwargs() -> dict:
    return dict(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=_BOS_ID,
        eos_token_id=_EOS_ID,
        pad_token_id=_EOS_ID,
    )


def _build_sd(out: Path, tokenizer, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=TINY_SD_IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32, 32),  # 4 blocks: 3 downsamplings, vae_scale_factor 8
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=TINY_SD_IMAGE_SIZE,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config_kwargs()))
    scheduler = PNDMScheduler(  # Stable Diffusion's own scheduler configuration
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out))


def _build_clip(out: Path, tokenizer, seed: int) -> None:
    import torch
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    # The PIL image processor: the default CLIPImageProcessor needs torchvision and otherwise
    # falls back to this one with a warning; the PIL one is the same preprocessing.
    image_processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

    torch.manual_seed(seed + 3)
    config = CLIPConfig(
        text_config=_text_config_kwargs(),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=TINY_CLIP_IMAGE_SIZE,
            patch_size=8,
            num_channels=3,
        ),
        projection_dim=32,
    )
    model = CLIPModel(config)
    image_processor = image_processor_cls(
        size={"shortest_edge": TINY_CLIP_IMAGE_SIZE},
        crop_size={"height": TINY_CLIP_IMAGE_SIZE, "width": TINY_CLIP_IMAGE_SIZE},
        do_resize=True,
        do_center_crop=True,
        do_normalize=True,
        do_convert_rgb=True,
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))


def build_tiny_models(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Build and save the tiny Stable Diffusion pipeline and CLIP model under ``out_dir``.

    Returns ``{"sd": out_dir/"tiny-sd", "clip": out_dir/"tiny-clip"}``; existing
    directories of those names are replaced. Nothing is downloaded (the tokenizer is
    converted from the CLIP BPE file that ``open_clip`` ships, see
    :mod:`sim.models.clip_vocab`). Takes a few seconds on a CPU.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    silence_torchvision_fallback_notice()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"sd": out / "tiny-sd", "clip": out / "tiny-clip"}
    with tempfile.TemporaryDirectory(prefix="clip-vocab-") as tmp:
        tokenizer = build_clip_tokenizer(tmp)
    for key, build in (("sd", _build_sd), ("clip", _build_clip)):
        target = paths[key]
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=out))
        try:
            with quiet_loading():  # also hides transformers' "Writing model shards" bars
                build(staging, tokenizer, seed)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return paths


__all__ = ["TINY_CLIP_IMAGE_SIZE", "TINY_SD_IMAGE_SIZE", "build_tiny_models"]
