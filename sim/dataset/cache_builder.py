"""Fill a generation cache (:mod:`sim.generation.cache`) from any generator backend: ``python -m sim cache build``.

:func:`fill_cache` generates and stores every image of a list of requests that
the cache does not hold yet (scoring real images with an assessor, so that the
offline fidelity assessor can run on them); :func:`build_cache` does it for a
scenario's prompts x strategies x seeds, with the seeds a world with the same
root seed would use, and returns a summary.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from sim.backends import build_assessor, build_corpus, build_generator, build_quality_model
from sim.dataset.demonstrations import default_demo_prompts, demo_seed
from sim.generation.base import GenerationRequest, Generator
from sim.generation.cache import CacheWriter, cache_key, generator_steps
from sim.generation.render import FORMATS
from sim.progress import count_progress
from sim.prompting.strategies import apply_strategy, validate_strategy
from sim.seeding import RandomStreams


def fill_cache(
    generator: Generator,
    writer: CacheWriter,
    requests: Iterable[GenerationRequest],
    *,
    assessor=None,
    backend: str | None = None,
    advance: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Generate and store every image of ``requests`` whose key is not in ``writer`` yet.

    With an ``assessor``, each new image is scored on its intact bytes; the score is
    recorded under ``scores`` and becomes ``generation_score`` when the backend has
    none. ``advance()`` is called once per image (stored or skipped). Returns
    counts ``{"generated": ..., "skipped": ..., "scored": ..., "score_failures": ...}``.
    """
    backend = backend or str(getattr(generator, "name", "unknown"))
    steps = generator_steps(generator)
    fmt = str(getattr(generator, "image_format", "") or "").lower() or None
    counts = {"generated": 0, "skipped": 0, "scored": 0, "score_failures": 0}
    for request in requests:
        todo = []
        for s in request.seeds:
            formats = [fmt] if fmt else list(FORMATS)
            keys = [
                cache_key(request.raw_prompt, request.prompt, request.negative_prompt, request.strategy, s, f)
                for f in formats
            ]
            if any(k in writer for k in keys):
                counts["skipped"] += 1
                if advance:
                    advance()
            else:
                todo.append(int(s))
        if not todo:
            continue
        sub = dataclasses.replace(request, seeds=tuple(todo))
        for img in generator.generate(sub):
            scores: dict[str, float] = {}
            gen_score = None
            source = None
            if assessor is not None:
                try:
                    verdict = assessor.assess(img, img.data, request.raw_prompt)
                except TypeError as err:  # the fidelity assessor on a backend without generation scores
                    raise ValueError(
                        f"cannot score {backend} images with the {getattr(assessor, 'name', 'configured')} "
                        f"assessor: {err}"
                    ) from None
                if verdict.failed:
                    counts["score_failures"] += 1
                else:
                    scores[verdict.assessor or assessor.name] = float(verdict.score)
                    counts["scored"] += 1
                    if img.generation_score is None:
                        gen_score = float(verdict.score)
                        source = f"assessor:{verdict.assessor or assessor.name}"
            writer.put(sub, img, backend=backend, steps=steps, scores=scores, generation_score=gen_score,
                       generation_score_source=source)
            counts["generated"] += 1
            if advance:
                advance()
    return counts


def build_cache(
    scenario,
    out_dir: Path | str,
    prompts: list[str] | None = None,
    strategies: Sequence[int] = tuple(range(7)),
    seeds_per_prompt: int = 4,
    backend: str | None = None,
    quiet: bool = False,
    *,
    n_prompts: int | None = None,
    score: bool = True,
    seed: int | None = None,
) -> dict[str, Any]:
    """Fill ``out_dir`` with images of ``prompts`` x ``strategies`` x ``seeds_per_prompt`` seeds.

    * ``prompts``: raw prompts; ``None`` takes the default demonstration prompts
      (:func:`sim.dataset.demonstrations.default_demo_prompts`, ``n_prompts`` of them, 32 by default).
    * Refined prompts come from the scenario's corpus (:func:`sim.backends.build_corpus`) and
      :func:`sim.prompting.strategies.apply_strategy`; the seeds are the demonstration
      dataset's (:func:`sim.dataset.demonstrations.demo_seed`, root ``seed`` or the scenario's), so
      ``python -m sim demo-dataset`` with ``generator.backend: cache`` replays this cache.
    * ``backend``: the generator to fill from (default: the scenario's; not ``cache``).
    * ``score``: also score each new image with the scenario's assessor on its intact
      bytes (recorded; it becomes ``generation_score`` for a backend without one).
    * Resumable: images already in the cache are skipped. Progress bar unless ``quiet``.

    Returns a summary dict (``dir``, ``images`` in the cache, ``generated``, ``skipped``, ...).
    """
    backend = backend or scenario.generator.backend
    if backend == "cache":
        raise ValueError("cannot fill a cache from the cache backend: name the backend to generate with (--backend)")
    if int(seeds_per_prompt) < 1:
        raise ValueError(f"seeds_per_prompt must be >= 1, got {seeds_per_prompt}")
    strategies = [validate_strategy(s) for s in strategies]
    if prompts is None:
        texts = [p.text for p in default_demo_prompts(n_prompts or 32, scenario.users.prompt_set)]
    else:
        texts = [str(p) for p in prompts]
        if n_prompts is not None:
            texts = texts[: int(n_prompts)]
    if not texts:
        raise ValueError("no prompts to cache")
    root = scenario.seed if seed is None else int(seed)
    streams = RandomStreams(root)
    t0 = time.perf_counter()
    quality = build_quality_model(scenario)
    generator = build_generator(scenario, quality, streams.integer_seed("prompt_effect"), backend=backend)
    assessor = build_assessor(scenario, quality) if score else None
    corpus = build_corpus(scenario)
    writer = CacheWriter(out_dir)
    before = len(writer)
    requests = []
    for text in texts:
        elements = corpus.elements(text)
        for s in strategies:
            refined, negative = apply_strategy(text, s, elements)
            seeds = tuple(demo_seed(streams, text, s, k) for k in range(int(seeds_per_prompt)))
            requests.append(
                GenerationRequest(raw_prompt=text, prompt=refined, strategy=s, seeds=seeds, negative_prompt=negative)
            )
    total = len(requests) * int(seeds_per_prompt)
    with count_progress(total, f"cache {writer.dir.name}: images", quiet) as advance:
        counts = fill_cache(generator, writer, requests, assessor=assessor, backend=backend, advance=advance)
    entries = list(writer.entries.values())
    scored = [e["generation_score"] for e in entries if e.get("generation_score") is not None]
    return {
        "dir": str(writer.dir),
        "images": len(entries),
        "images_before": before,
        "generated": counts["generated"],
        "skipped": counts["skipped"],
        "scored": counts["scored"],
        "score_failures": counts["score_failures"],
        "prompts": len(texts),
        "strategies": strategies,
        "seeds_per_prompt": int(seeds_per_prompt),
        "root_seed": root,
        "backend": backend,
        "backends_in_cache": sorted({str(e.get("backend")) for e in entries}),
        "models_in_cache": sorted({str(e.get("model")) for e in entries}),
        "assessor": getattr(assessor, "name", None),
        "bytes": int(sum(int(e.get("n_bytes") or 0) for e in entries)),
        "mean_generation_score": float(np.mean(scored)) if scored else math.nan,
        "wall_time_s": time.perf_counter() - t0,
    }


__all__ = ["build_cache", "fill_cache"]
