"""The demonstration dataset D (section IV-B of the D3PG paper): prompts x strategies x seeds x powers.

For each demonstration prompt, prompt-engineering strategy and seed, D holds one
generated image scored twice by the scenario's assessor, once intact and once
as received over the scenario's channel at each of several transmit powers:

1. refine the raw prompt with the scenario's corpus (:func:`sim.backends.build_corpus`)
   and :func:`sim.prompting.strategies.apply_strategy` (refined prompt, negative
   prompt and the corpus elements used are recorded);
2. generate the image with the scenario's generator (:func:`sim.backends.build_generator`;
   surrogate, diffusers or cache) with seed :func:`demo_seed`;
3. score the intact bytes with the scenario's assessor -> ``generation_score``
   (for the surrogate + fidelity pair, the surrogate's own score);
4. for each power level: the mean SNR at ``distance_m``, one shadowing draw and the
   image's BER (``Channel.ber_given_shadowing``, or ``ber_awgn`` of one fading draw
   under ``block_fading``: the world's code), bit errors on the real bytes
   (:func:`sim.model.channel.flip_bits`), and the assessor's score of what arrived ->
   ``received_score`` (with ``decodable``, ``damage``, ``bits_flipped``).

Every random draw comes from :class:`sim.seeding.RandomStreams` (root ``seed``)
keyed by (prompt, strategy, seed index, power index), where the prompt key is a
hash of its text (:func:`prompt_stream_key`): a prompt gets the same seeds and
channel draws whatever else is in D, so D is deterministic and any part of it can
be rebuilt alone. The surrogate's prompt effect uses the run key
``RandomStreams(seed).integer_seed("prompt_effect")``, as a world with that seed does
(``prompt_effects="run"``); with ``prompt_effects="per_seed"`` image ``k`` of every prompt
comes from run key :func:`demo_run_key` ``(seed, k)`` instead: demonstrations gathered over
many runs, so that the best mean of D's seeds estimates what a prompt's text tells (the
per-run part of a prompt's strategy effects averages out), not one run's draw.

**Two delivery modes**, as in the world (``delivery``, default the scenario's
``channel.delivery``): ``bytes`` renders, damages and assesses real image bytes as
above; ``statistical`` draws each image's generation score from the quality model
(``QualityModel.sample_scores``, the surrogate's own draw) and its fate at each power
from the fitted damage model (:func:`sim.model.service.delivered`, the world's
statistical round rule), with the same channel draws. It needs the surrogate
generator and is about a thousand times faster: enough for the hundreds of seeds per
cell a clean expert needs (``scripts/expert_seeds.py``).

One row per (prompt, strategy, seed, power); columns in :data:`COLUMNS`. The
build settings are stored in the Parquet file's metadata (``DataFrame.attrs
["demo_dataset"]``).

**Resumable**: every ``checkpoint_every`` prompts, and when interrupted (Ctrl-C or
an error), the rows so far go to ``<out stem>.partial.parquet`` (atomic writes).
Run the same command again: images already there are skipped, and the final file
equals the one an uninterrupted build writes. A partial file from other settings
is refused with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sim.backends import build_assessor, build_corpus, build_generator, build_service_models
from sim.model.channel import binomial_counts, flip_bits, linear_to_db
from sim.model.service import ServiceModels, delivered
from sim.progress import count_progress
from sim.generation.base import GenerationRequest
from sim.generation.surrogate import typical_image_bits
from sim.prompting.prompts import Prompt, load_prompts
from sim.prompting.strategies import STRATEGIES, aspects_of, apply_strategy, validate_strategy
from sim.model.quality import prompt_complexity
from sim.io import write_parquet
from sim.seeding import RandomStreams

#: Default transmit powers, W.
DEFAULT_POWERS_W: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)
#: Spawn-key tag that keeps D's streams apart from a world's (same component names).
STREAM_TAG = 0x44454D4F  # "DEMO"
#: Version of D's layout (stored in the metadata).
FORMAT_VERSION = 1

#: Columns of D and their dtypes, in order.
COLUMNS: dict[str, str] = {
    "prompt_index": "int64",  # position of the prompt in D
    "prompt_id": "string",
    "prompt": "string",  # the raw prompt
    "complexity": "float64",  # sim.model.quality.prompt_complexity of the raw prompt
    "strategy": "int64",
    "strategy_name": "string",
    "refined_prompt": "string",
    "negative_prompt": "string",
    "corpus_elements": "string",  # JSON: aspect -> phrase, the elements the strategy used
    "seed_index": "int64",
    "seed": "int64",  # the generator seed
    "generator": "string",
    "model": "string",
    "assessor": "string",
    "image_format": "string",
    "width": "int64",
    "height": "int64",
    "n_bits": "int64",
    "generation_time_s": "float64",
    "time_source": "string",
    "backend_generation_score": "float64",  # the backend's own score (NaN for a real model)
    "generation_score": "float64",  # the assessor's score of the intact image
    "generation_assessment_failed": "bool",
    "power_index": "int64",
    "power_w": "float64",
    "distance_m": "float64",
    "mean_snr_db": "float64",  # P d^-eps Omega / N0, shadowing at its median
    "shadowing_db": "float64",
    "snr_db": "float64",  # mean SNR with this shadowing (block fading: instantaneous)
    "ber": "float64",
    "expected_errors": "float64",  # ber * n_bits
    "bits_flipped": "int64",
    "decodable": "bool",
    "damage": "float64",  # 1 - SSIM as the assessor measured it (NaN if not measured)
    "received_score": "float64",
    "received_assessment_failed": "bool",
    "received_assessor": "string",  # whose score received_score is (a fallback's after a failure)
}

#: Columns that identify a row.
ROW_KEY: tuple[str, ...] = ("prompt_index", "strategy", "seed_index", "power_index")
_IMAGE_KEY: tuple[str, ...] = ("prompt_index", "strategy", "seed_index")


def prompt_stream_key(prompt: str) -> int:
    """A 31-bit integer from the SHA-256 of the lower-cased, whitespace-collapsed prompt.

    >>> prompt_stream_key("A garden  with a fountain") == prompt_stream_key("a garden with a fountain")
    True
    """
    text = " ".join(str(prompt).lower().split())
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little") >> 1


def demo_seed(streams: RandomStreams, prompt: str, strategy: int, index: int) -> int:
    """Generator seed of image ``index`` of (``prompt``, ``strategy``) in D (and in ``cache build``)."""
    return streams.integer_seed("generation", STREAM_TAG, prompt_stream_key(prompt), int(strategy), int(index))


#: Where D's prompt effects come from (see the module docstring).
PROMPT_EFFECTS = ("run", "per_seed")
#: How D's images reach the assessor (see the module docstring).
DELIVERY_MODES = ("bytes", "statistical")


def demo_run_key(streams: RandomStreams, index: int) -> int:
    """The run key of D's image ``index`` (of every prompt and strategy) under ``prompt_effects="per_seed"``."""
    return streams.integer_seed("prompt_effect", STREAM_TAG, int(index))


def default_demo_prompts(n_prompts: int = 32, prompt_set: str | Path | None = None) -> list[Prompt]:
    """A fixed subset of the prompt set spread evenly over complexity.

    Prompts are ordered by (complexity, id) and ``n_prompts`` of them taken at
    evenly spaced ranks (the least and the most complex included); all of them if
    ``n_prompts`` is at least the set's size. ``prompt_set``: ``None`` or ``"default"``
    for the shipped set, else a prompt file.

    >>> ps = default_demo_prompts(8)
    >>> len(ps), ps[0].complexity <= ps[-1].complexity
    (8, True)
    >>> [p.id for p in default_demo_prompts(8)] == [p.id for p in ps]
    True
    """
    if isinstance(n_prompts, bool) or int(n_prompts) != n_prompts or n_prompts < 1:
        raise ValueError(f"n_prompts must be an integer >= 1, got {n_prompts!r}")
    path = None if prompt_set in (None, "default") else prompt_set
    pool = sorted(load_prompts(path), key=lambda p: (p.complexity, p.id))
    if n_prompts >= len(pool):
        return pool
    ranks = np.unique(np.round(np.linspace(0, len(pool) - 1, int(n_prompts))).astype(int))
    return [pool[i] for i in ranks]


def _prompt_list(prompts: Sequence[str] | None, n_prompts: int, prompt_set: str) -> list[Prompt]:
    if prompts is None:
        return default_demo_prompts(n_prompts, prompt_set)
    known: dict[str, Prompt] = {}
    try:
        known = {p.text.lower(): p for p in load_prompts(None if prompt_set == "default" else prompt_set)}
    except ValueError:
        known = {}
    out: list[Prompt] = []
    seen: set[str] = set()
    for i, text in enumerate(prompts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"prompts[{i}] must be a non-empty string, got {text!r}")
        t = " ".join(text.split())
        if t.lower() in seen:
            raise ValueError(f"prompts[{i}] {t!r} is listed twice")
        seen.add(t.lower())
        p = known.get(t.lower())
        out.append(
            p if p is not None else Prompt(f"prompt-{i:03d}", t, "", "", "other", float(prompt_complexity(t)))
        )
    if not out:
        raise ValueError("no demonstration prompts")
    return out


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`build_demo_dataset` made."""

    path: Path
    rows: int
    prompts: int
    strategies: tuple[int, ...]
    seeds_per_strategy: int
    power_levels_w: tuple[float, ...]
    #: Images in D; generated in this call; taken over from a partial file.
    images: int
    images_generated: int
    images_resumed: int
    wall_time_s: float
    file_bytes: int
    generator: str
    assessor: str
    mean_generation_score: float
    #: Mean received score per power level (W -> score).
    mean_received_score: dict[float, float] = field(default_factory=dict)
    undecodable_share: float = math.nan

    def describe(self) -> str:
        per_power = ", ".join(f"{p:g} W {s:.2f}" for p, s in self.mean_received_score.items())
        return (
            f"{self.path}: {self.rows} rows ({self.prompts} prompts x {len(self.strategies)} strategies x "
            f"{self.seeds_per_strategy} seeds x {len(self.power_levels_w)} powers), {self.file_bytes / 1e6:.2f} MB, "
            f"{self.wall_time_s:.1f} s ({self.images_generated} images generated, {self.images_resumed} resumed); "
            f"{self.generator} + {self.assessor}: mean generation score {self.mean_generation_score:.2f}, "
            f"received {per_power}; undecodable {self.undecodable_share:.1%}"
        )


def _frame(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS)) if not isinstance(rows, pd.DataFrame) else rows[list(COLUMNS)]
    df = df.astype(COLUMNS)
    return df.sort_values(list(ROW_KEY), kind="stable").reset_index(drop=True)


def partial_path_for(out_path: Path | str) -> Path:
    """``<out stem>.partial.parquet`` beside ``out_path``.

    >>> partial_path_for("results/D.parquet").as_posix()
    'results/D.partial.parquet'
    """
    p = Path(out_path)
    return p.with_name(p.stem + ".partial.parquet")


def _fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def build_demo_dataset(
    scenario,
    out_path: Path | str,
    prompts: list[str] | None = None,
    n_prompts: int = 32,
    strategies: Sequence[int] = range(7),
    seeds_per_strategy: int = 4,
    power_levels_w: Sequence[float] = DEFAULT_POWERS_W,
    distance_m: float = 100.0,
    seed: int = 0,
    quiet: bool = False,
    checkpoint_every: int = 4,
    *,
    backend: str | None = None,
    generator=None,
    assessor=None,
    delivery: str | None = None,
    prompt_effects: str = "run",
) -> DemoSummary:
    """Build D (see the module docstring) and write it to ``out_path`` (Parquet, atomic).

    ``prompts``: raw prompts (default: :func:`default_demo_prompts` of ``n_prompts``
    from the scenario's ``users.prompt_set``). ``backend`` overrides
    ``generator.backend``; ``generator`` / ``assessor`` replace the scenario's
    objects (their ``name`` is recorded). ``seed``: root of every random stream.
    ``delivery`` (:data:`DELIVERY_MODES`, default the scenario's ``channel.delivery``) and
    ``prompt_effects`` (:data:`PROMPT_EFFECTS`): see the module docstring.
    """
    t0 = time.perf_counter()
    out = Path(out_path)
    strategies = tuple(validate_strategy(s) for s in strategies)
    if not strategies or len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies must be distinct and non-empty, got {strategies}")
    if isinstance(seeds_per_strategy, bool) or int(seeds_per_strategy) != seeds_per_strategy or seeds_per_strategy < 1:
        raise ValueError(f"seeds_per_strategy must be an integer >= 1, got {seeds_per_strategy!r}")
    powers = tuple(float(p) for p in power_levels_w)
    if not powers or not all(math.isfinite(p) and p > 0 for p in powers):
        raise ValueError(f"power_levels_w must be finite powers > 0 W, got {list(power_levels_w)}")
    if not (math.isfinite(float(distance_m)) and float(distance_m) > 0):
        raise ValueError(f"distance_m must be a finite distance > 0 m, got {distance_m!r}")
    if int(checkpoint_every) < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    delivery = scenario.channel.delivery if delivery is None else str(delivery)
    if delivery not in DELIVERY_MODES:
        raise ValueError(f"delivery must be one of {', '.join(DELIVERY_MODES)}, got {delivery!r}")
    if prompt_effects not in PROMPT_EFFECTS:
        raise ValueError(f"prompt_effects must be one of {', '.join(PROMPT_EFFECTS)}, got {prompt_effects!r}")
    demo_prompts = _prompt_list(prompts, n_prompts, scenario.users.prompt_set)
    n_seeds = int(seeds_per_strategy)
    distance = float(distance_m)

    streams = RandomStreams(int(seed))
    models = build_service_models(scenario)
    quality = models.quality
    if generator is None:
        generator = build_generator(scenario, quality, streams.integer_seed("prompt_effect"), backend=backend)
    if assessor is None:
        assessor = build_assessor(scenario, quality)
    corpus = build_corpus(scenario)
    gen_name = str(getattr(generator, "name", type(generator).__name__))
    ass_name = str(getattr(assessor, "name", type(assessor).__name__))
    if (delivery == "statistical" or prompt_effects == "per_seed") and not hasattr(generator, "prompt_effect_key"):
        what = "delivery: statistical" if delivery == "statistical" else "prompt_effects: per_seed"
        raise ValueError(f"{what} needs the surrogate generator (its scores are the quality model's draws); "
                         f"{gen_name!r} has no prompt effect")
    if delivery == "statistical":
        ass_name = "statistical"
    n_bits = int(round(typical_image_bits(scenario))) if delivery == "statistical" else 0

    settings = {
        "version": FORMAT_VERSION,
        "scenario": scenario.model_dump(mode="json"),
        "generator_override": None if backend is None else backend,
        "generator": gen_name,
        "assessor": ass_name,
        "prompts": [p.text for p in demo_prompts],
        "strategies": list(strategies),
        "seeds_per_strategy": n_seeds,
        "power_levels_w": list(powers),
        "distance_m": distance,
        "seed": int(seed),
        **({"delivery": delivery} if delivery != "bytes" else {}),
        **({"prompt_effects": prompt_effects} if prompt_effects != "run" else {}),
    }
    meta = {
        "version": FORMAT_VERSION,
        "fingerprint": _fingerprint(settings),
        "scenario": scenario.name,
        "generator": gen_name,
        "assessor": ass_name,
        "corpus": scenario.prompting.corpus,
        "image_size": scenario.generator.image_size,
        "image_format": scenario.generator.image_format,
        "prompts": len(demo_prompts),
        "strategies": list(strategies),
        "seeds_per_strategy": n_seeds,
        "power_levels_w": list(powers),
        "distance_m": distance,
        "seed": int(seed),
        "channel": scenario.channel.model_dump(mode="json"),
        "delivery": delivery,
        "prompt_effects": prompt_effects,
    }

    partial = partial_path_for(out)
    done_frame = _frame([])
    if partial.exists():
        try:
            done_frame = pd.read_parquet(partial)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{partial}: unreadable partial dataset ({type(err).__name__}); delete it to start over") from None
        old = done_frame.attrs.get("demo_dataset", {})
        if not isinstance(old, dict) or old.get("fingerprint") != meta["fingerprint"]:
            raise ValueError(
                f"{partial}: partial dataset from a build with other settings (scenario, prompts, strategies, "
                "seeds, powers, distance or seed); rerun with the same settings or delete it to start over"
            )
        done_frame = _frame(done_frame)
    done_images = {tuple(k) for k in done_frame[list(_IMAGE_KEY)].drop_duplicates().itertuples(index=False)}
    chunks: list[pd.DataFrame] = [done_frame] if len(done_frame) else []
    pending: list[dict[str, Any]] = []
    counts = {"generated": 0, "resumed": len(done_images)}

    def flush_pending() -> None:
        nonlocal pending
        if pending:
            frames = [p for p in pending if isinstance(p, pd.DataFrame)]
            rows = [p for p in pending if not isinstance(p, pd.DataFrame)]
            chunks.append(_frame(pd.concat(frames + ([pd.DataFrame(rows, columns=list(COLUMNS))] if rows else []),
                                           ignore_index=True)))
            pending = []

    def checkpoint() -> None:
        flush_pending()
        frame = _frame(pd.concat(chunks, ignore_index=True)) if chunks else _frame([])
        chunks[:] = [frame] if len(frame) else []
        frame.attrs["demo_dataset"] = meta
        partial.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(partial, frame)

    total_images = len(demo_prompts) * len(strategies) * n_seeds
    dirty = False
    with count_progress(total_images, f"demo dataset {out.name}: images", quiet) as advance:
        for _ in range(len(done_images)):
            advance()
        try:
            for pi, prompt in enumerate(demo_prompts):
                pkey_text = prompt.text
                todo = [
                    (s, k) for s in strategies for k in range(n_seeds) if (pi, s, k) not in done_images
                ]
                if not todo:
                    continue
                elements = corpus.elements(pkey_text)
                for s in strategies:
                    ks = [k for (st, k) in todo if st == s]
                    if not ks:
                        continue
                    refined, negative = apply_strategy(pkey_text, s, elements)
                    used = {a: elements[a] for a in aspects_of(s)}
                    seeds = tuple(demo_seed(streams, pkey_text, s, k) for k in ks)
                    if delivery == "statistical":
                        pending.append(_statistical_rows(pi, prompt, s, ks, seeds, refined, negative, used, quality,
                                                         models, streams, powers, distance, gen_name, n_bits,
                                                         prompt_effects, generator.prompt_effect_key,
                                                         scenario.generator.image_format))
                        counts["generated"] += len(ks)
                        dirty = True
                        for _ in ks:
                            advance()
                        continue
                    if prompt_effects == "per_seed":
                        images = []
                        for k, seed_k in zip(ks, seeds):
                            generator.prompt_effect_key = demo_run_key(streams, k)
                            images += generator.generate(GenerationRequest(
                                raw_prompt=pkey_text, prompt=refined, strategy=s, seeds=(seed_k,),
                                negative_prompt=negative))
                    else:
                        images = generator.generate(
                            GenerationRequest(
                                raw_prompt=pkey_text, prompt=refined, strategy=s, seeds=seeds, negative_prompt=negative
                            )
                        )
                    if len(images) != len(seeds):
                        raise RuntimeError(f"{gen_name} returned {len(images)} images for {len(seeds)} seeds")
                    for k, image in zip(ks, images):
                        pending.extend(
                            _image_rows(
                                pi, prompt, s, k, refined, negative, used, image, generator, assessor, models,
                                streams, powers, distance, gen_name, ass_name,
                            )
                        )
                        counts["generated"] += 1
                        dirty = True
                        advance()
                if (pi + 1) % int(checkpoint_every) == 0 and dirty:
                    checkpoint()
                    dirty = False
        except BaseException:
            if dirty:
                checkpoint()
            raise
    flush_pending()
    final = _frame(pd.concat(chunks, ignore_index=True)) if chunks else _frame([])
    final.attrs["demo_dataset"] = meta
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(out, final)
    if partial.exists():
        partial.unlink()
    images = final.drop_duplicates(list(_IMAGE_KEY))
    received = final.groupby("power_w", sort=True)["received_score"].mean()
    return DemoSummary(
        path=out,
        rows=len(final),
        prompts=len(demo_prompts),
        strategies=strategies,
        seeds_per_strategy=n_seeds,
        power_levels_w=powers,
        images=len(images),
        images_generated=counts["generated"],
        images_resumed=counts["resumed"],
        wall_time_s=time.perf_counter() - t0,
        file_bytes=out.stat().st_size,
        generator=gen_name,
        assessor=ass_name,
        mean_generation_score=float(images["generation_score"].mean()) if len(images) else math.nan,
        mean_received_score={float(p): float(v) for p, v in received.items()},
        undecodable_share=float((~final["decodable"]).mean()) if len(final) else math.nan,
    )


def _link_draws(models: ServiceModels, streams: RandomStreams, pkey: int, strategy: int, k: int,
                powers: Sequence[float], distance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(mean SNR dB, shadowing dB, SNR dB, BER)`` of image ``k`` at each power level: the channel's draws from the
    image's own streams (shadowing, and the fading gain under the block-fading BER model) through the scenario's
    channel and BER model, the same in both delivery modes."""
    channel = models.channel
    p = np.asarray(powers, dtype=float)
    shadows = np.array([channel.draw_shadowing_db(1, streams.rng("shadowing", STREAM_TAG, pkey, strategy, k, j))[0]
                        for j in range(p.size)])
    mean_snrs = np.asarray(channel.mean_snr_db(p, distance), dtype=float)
    if models.ber_model == "block_fading":
        gains = np.array([channel.draw_fading_gain(1, streams.rng("fading", STREAM_TAG, pkey, strategy, k, j))[0]
                          for j in range(p.size)])
        with np.errstate(divide="ignore"):
            snr_dbs = np.asarray(linear_to_db(channel.snr(p, distance, shadows, gains)), dtype=float)
    else:  # the BER averages over the fading: no draw
        gains = np.full(p.size, channel.mean_fading_gain)
        snr_dbs = mean_snrs + shadows
    bers = np.asarray(models.image_ber(p, distance, shadows, gains), dtype=float)
    return mean_snrs, shadows, snr_dbs, bers


def _image_rows(
    pi: int,
    prompt: Prompt,
    strategy: int,
    k: int,
    refined: str,
    negative: str,
    used: dict[str, str],
    image,
    generator,
    assessor,
    models: ServiceModels,
    streams: RandomStreams,
    powers: tuple[float, ...],
    distance: float,
    gen_name: str,
    ass_name: str,
) -> list[dict[str, Any]]:
    """The rows of one image: its intact score, then one row per power level."""
    pkey = prompt_stream_key(prompt.text)
    intact = assessor.assess(image, image.data, prompt.text)
    height, width = int(image.pixels.shape[0]), int(image.pixels.shape[1])
    base = {
        "prompt_index": pi,
        "prompt_id": prompt.id,
        "prompt": prompt.text,
        "complexity": float(prompt.complexity),
        "strategy": int(strategy),
        "strategy_name": STRATEGIES[strategy].name,
        "refined_prompt": refined,
        "negative_prompt": negative,
        "corpus_elements": json.dumps(used, ensure_ascii=False, sort_keys=True),
        "seed_index": int(k),
        "seed": int(image.seed),
        "generator": gen_name,
        "model": str(image.model or gen_name),
        "assessor": ass_name,
        "image_format": image.format,
        "width": width,
        "height": height,
        "n_bits": int(image.n_bits),
        "generation_time_s": float(image.generation_time_s),
        "time_source": str(image.time_source),
        "backend_generation_score": math.nan if image.generation_score is None else float(image.generation_score),
        "generation_score": float(intact.score),
        "generation_assessment_failed": bool(intact.failed),
        "distance_m": distance,
    }
    rows = []
    mean_snrs, shadows, snr_dbs, bers = _link_draws(models, streams, pkey, strategy, k, powers, distance)
    for j, power in enumerate(powers):
        mean_snr_db, shadow_db, ber, snr_db = float(mean_snrs[j]), float(shadows[j]), float(bers[j]), float(snr_dbs[j])
        received, flipped = flip_bits(image.data, ber, streams.rng("bit_errors", STREAM_TAG, pkey, strategy, k, j))
        verdict = intact if flipped == 0 else assessor.assess(image, received, prompt.text)
        rows.append(
            {
                **base,
                "power_index": j,
                "power_w": power,
                "mean_snr_db": mean_snr_db,
                "shadowing_db": shadow_db,
                "snr_db": snr_db,
                "ber": ber,
                "expected_errors": ber * image.n_bits,
                "bits_flipped": int(flipped),
                "decodable": bool(verdict.decodable),
                "damage": float(verdict.damage),
                "received_score": float(verdict.score),
                "received_assessment_failed": bool(verdict.failed),
                "received_assessor": str(verdict.assessor or ass_name),
            }
        )
    return rows


def _statistical_rows(
    pi: int,
    prompt: Prompt,
    strategy: int,
    ks: Sequence[int],
    seeds: Sequence[int],
    refined: str,
    negative: str,
    used: dict[str, str],
    quality,
    models: ServiceModels,
    streams: RandomStreams,
    powers: tuple[float, ...],
    distance: float,
    gen_name: str,
    n_bits: int,
    prompt_effects: str,
    run_key: int,
    image_format: str,
) -> pd.DataFrame:
    """The rows of images ``ks`` of (``prompt``, ``strategy``) in the statistical delivery mode: the generation
    score is the surrogate's draw (``QualityModel.sample_scores`` from the image's seed), the channel draws are the
    bytes mode's streams, and each power's fate is :func:`sim.model.service.delivered` of the image's BER."""
    pkey = prompt_stream_key(prompt.text)
    p = np.asarray(powers, dtype=float)
    n_k, n_p = len(ks), p.size
    gen = np.empty(n_k)
    mean_snrs, shadows, snr_dbs, bers = (np.empty((n_k, n_p)) for _ in range(4))
    uniforms, count_uniforms = np.empty((n_k, n_p)), np.empty((n_k, n_p))
    for a, (k, seed_k) in enumerate(zip(ks, seeds)):
        key = demo_run_key(streams, k) if prompt_effects == "per_seed" else run_key
        gen[a] = quality.sample_scores(prompt.text, strategy, np.random.default_rng(int(seed_k)), 1, key=key)[0]
        mean_snrs[a], shadows[a], snr_dbs[a], bers[a] = _link_draws(models, streams, pkey, strategy, k, powers, distance)
        for j in range(n_p):  # the damage uniform, then the bits flipped (for the record), from the image's stream
            uniforms[a, j], count_uniforms[a, j] = streams.rng("bit_errors", STREAM_TAG, pkey, strategy, k, j).random(2)
    flips = binomial_counts(n_bits, bers, count_uniforms)
    received, decodable = delivered(quality, bers, gen[:, None], uniforms, n_bits)
    rows = n_k * n_p
    ks_arr = np.repeat(np.asarray(ks, dtype=np.int64), n_p)
    return pd.DataFrame({
        "prompt_index": np.full(rows, pi), "prompt_id": prompt.id, "prompt": prompt.text,
        "complexity": float(prompt.complexity), "strategy": int(strategy), "strategy_name": STRATEGIES[strategy].name,
        "refined_prompt": refined, "negative_prompt": negative,
        "corpus_elements": json.dumps(used, ensure_ascii=False, sort_keys=True),
        "seed_index": ks_arr, "seed": np.repeat(np.asarray(seeds, dtype=np.int64), n_p), "generator": gen_name,
        "model": gen_name, "assessor": "statistical", "image_format": image_format,
        "width": 0, "height": 0, "n_bits": n_bits, "generation_time_s": math.nan, "time_source": "modelled",
        "backend_generation_score": np.repeat(gen, n_p), "generation_score": np.repeat(gen, n_p),
        "generation_assessment_failed": False, "power_index": np.tile(np.arange(n_p), n_k),
        "power_w": np.tile(p, n_k), "distance_m": distance, "mean_snr_db": mean_snrs.ravel(),
        "shadowing_db": shadows.ravel(), "snr_db": snr_dbs.ravel(), "ber": bers.ravel(),
        "expected_errors": bers.ravel() * n_bits, "bits_flipped": flips.ravel(), "decodable": decodable.ravel(),
        "damage": math.nan, "received_score": received.ravel(), "received_assessment_failed": False,
        "received_assessor": "statistical",
    }, columns=list(COLUMNS))


__all__ = [
    "COLUMNS",
    "DELIVERY_MODES",
    "PROMPT_EFFECTS",
    "demo_run_key",
    "DEFAULT_POWERS_W",
    "DemoSummary",
    "ROW_KEY",
    "build_demo_dataset",
    "default_demo_prompts",
    "demo_seed",
    "partial_path_for",
    "prompt_stream_key",
]
