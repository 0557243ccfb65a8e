"""Time per image of the real backends on the tiny local models, or on any local Stable Diffusion pipeline.

Builds the tiny Stable Diffusion pipeline and CLIP (unless ``--models DIR`` already holds them),
then times the diffusers generator (the tiny pipeline, or ``--model PATH``: a local
``StableDiffusionPipeline`` directory) at ``--size`` px (default 64), 25 steps, batches of 1 and 4,
and the CLIP and BRISQUE assessors per image. ``--device cuda`` checks the CUDA path on a GPU machine
and prints the peak GPU memory.

Usage: ``python scripts/bench_real_backends.py [--models DIR] [--model PATH] [--size 64] [--device auto|cpu|cuda] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.assessment.brisque import BrisqueAssessor  # noqa: E402
from sim.assessment.clip import ClipAssessor  # noqa: E402
from sim.config import ClipConfig, DiffusersConfig  # noqa: E402
from sim.generation.base import GenerationRequest  # noqa: E402
from sim.generation.diffusers_backend import DiffusersGenerator  # noqa: E402
from sim.models.tiny import build_tiny_models  # noqa: E402


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="directory made by `python -m sim models build-tiny`")
    parser.add_argument("--model", type=Path, help="a local StableDiffusionPipeline directory to time (default: the tiny one)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = args.models or Path(tempfile.mkdtemp(prefix="tiny-models-"))
    if not (root / "tiny-sd").exists():
        t0 = time.perf_counter()
        build_tiny_models(root)
        print(f"built tiny models in {time.perf_counter() - t0:.1f} s -> {root}")
    gen = DiffusersGenerator(
        DiffusersConfig(model=str(args.model or root / "tiny-sd"), local_files_only=True, steps=args.steps, device=args.device),
        image_size=args.size, image_format="jpeg", jpeg_quality=85, inference_time_s=1.0,
    )
    print(f"device {gen.device}, dtype {gen.dtype}, {args.size}x{args.size}, {args.steps} steps, best of {args.repeats}")
    images = []
    for batch in (1, 4):
        request = GenerationRequest("A dog with a colorful collar", "A dog with a colorful collar, highly detailed", 6,
                                    tuple(range(batch)), "blurry")
        gen.generate(request)  # warm-up
        seconds = best(lambda: images.extend(gen.generate(request)), args.repeats)
        print(f"diffusers batch {batch}: {seconds / batch:.3f} s per image")
        if gen.device.startswith("cuda"):
            import torch

            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"  peak GPU memory allocated {peak:.2f} GiB ({peak / batch:.2f} GiB per image in the batch; "
                  "the scenario's generator.gpu_memory_gib)")
            torch.cuda.reset_peak_memory_stats()
    clip = ClipAssessor(ClipConfig(model=str(root / "tiny-clip"), local_files_only=True, device=args.device))
    brisque = BrisqueAssessor()
    image = images[-1]
    for name, assessor in (("clip", clip), ("brisque", brisque)):
        assessor.assess(image, image.data, "A dog with a colorful collar")
        seconds = best(lambda: assessor.assess(image, image.data, "A dog with a colorful collar"), args.repeats)
        print(f"{name} assessor: {1000 * seconds:.1f} ms per image")


if __name__ == "__main__":
    main()
