"""Fit the quality model's damage part (``sim/data/quality_damage.yaml``) by Monte Carlo.

For every image format, a subset of the shipped prompts is rendered and encoded by
the surrogate generator's own code, each image is sent through a binary symmetric
channel (``sim.model.channel.flip_bits``) at a log-spaced grid of bit error rates,
decoded and scored by the fidelity assessor. With ``e = ber * n_bits`` the
expected number of bit errors in an image, the quality model composes::

    expected received score = gen_score * (1 - p_undecodable(e)) * retention(e)
    retention(e)     = 1 / (1 + (e / e50) ** k)
    p_undecodable(e) = 1 - exp(-e * undecodable_per_error)

so ``retention`` is fitted to the score share kept by the images that still decode
(``E[received / generated | decodable]``, least squares over the decodable trials
with ``scipy.optimize.curve_fit``) and ``undecodable_per_error`` by maximum
likelihood to the decodable / undecodable outcomes. Fitting retention to all trials
instead would count undecodable images twice.

Usage::

    python scripts/fit_damage_model.py [--format jpeg,png,raw] [--size 256]
        [--out sim/data/quality_damage.yaml] [--prompt-stride 2] [--seeds 2] [--repeats 4] [--bers 21]
        [--workers 2] [--seed 20240611]

Formats not fitted in a run keep their entries from an existing ``--out`` file.
Deterministic for a given seed, whatever the number of workers.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.assessment.fidelity import DEFAULT_SSIM_GAMMA, FidelityAssessor, damage_trials  # noqa: E402

# The estimators live in sim.dataset.calibration, shared with the calibration of a demonstration dataset.
from sim.dataset.calibration import (  # noqa: E402,F401
    E50_NO_DAMAGE,
    damage_fit_table,
    damage_yaml_entry,
    fit_retention,
    fit_undecodable,
    retention_curve,
)
from sim.generation.base import GeneratedImage  # noqa: E402
from sim.generation.render import FORMATS  # noqa: E402
from sim.generation.surrogate import render_encoded  # noqa: E402
from sim.progress import count_progress  # noqa: E402
from sim.prompting.prompts import load_prompts  # noqa: E402

DEFAULT_OUT = ROOT / "sim" / "data" / "quality_damage.yaml"


def ber_grid(lo: float = 1e-7, hi: float = 1e-2, points: int = 16) -> np.ndarray:
    return np.logspace(math.log10(lo), math.log10(hi), points)


# --- Monte Carlo ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    fmt: str
    prompt: str
    complexity: float
    seed: int
    size: int
    jpeg_quality: int
    bers: tuple[float, ...]
    repeats: int
    gamma: float
    stream: tuple[int, ...]  # spawn key of this task's random stream
    root_seed: int


def _run_task(task: _Task) -> dict[str, np.ndarray]:
    data, pixels = render_encoded(task.prompt, task.seed, task.size, task.fmt, task.jpeg_quality, task.complexity)
    image = GeneratedImage(data, task.fmt, pixels, seed=task.seed, generation_time_s=0.0, generation_score=10.0)
    rng = np.random.default_rng(np.random.SeedSequence(task.root_seed, spawn_key=task.stream))
    trials = damage_trials(
        [image], task.bers, task.repeats, rng, FidelityAssessor(task.gamma), complexities=[task.complexity]
    )
    return {
        "ber": trials.ber,
        "n_bits": trials.n_bits,
        "errors": trials.errors,
        "flipped": trials.flipped,
        "decodable": trials.decodable,
        "ratio": trials.ratio,
        "complexity": trials.complexity,
    }


def monte_carlo(
    fmt: str,
    prompts: list,
    *,
    size: int,
    jpeg_quality: int,
    bers: np.ndarray,
    seeds: int,
    repeats: int,
    gamma: float,
    root_seed: int,
    workers: int,
) -> dict[str, np.ndarray]:
    fmt_index = FORMATS.index(fmt)
    tasks = [
        _Task(fmt, p.text, p.complexity, s, size, jpeg_quality, tuple(map(float, bers)), repeats, gamma,
              (fmt_index, i, s), root_seed)
        for i, p in enumerate(prompts)
        for s in range(seeds)
    ]
    with count_progress(len(tasks), f"{fmt}: images through the channel", quiet=False) as advance:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                parts = []
                for part in pool.map(_run_task, tasks, chunksize=4):
                    parts.append(part)
                    advance()
        else:
            parts = []
            for t in tasks:
                parts.append(_run_task(t))
                advance()
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


# --- fitting ---------------------------------------------------------------------------


def summarise(fmt: str, mc: dict[str, np.ndarray], bers: np.ndarray) -> dict:
    dec = mc["decodable"]
    e50, k, damaged = fit_retention(mc["errors"][dec], mc["ratio"][dec])
    u = fit_undecodable(mc["errors"], ~dec)
    pred_r = retention_curve(mc["errors"], math.log(e50), k)
    pred_u = -np.expm1(-mc["errors"] * u)
    rmse_samples = float(np.sqrt(np.mean((mc["ratio"][dec] - pred_r[dec]) ** 2)))
    groups = [np.isclose(mc["ber"], ber) for ber in bers]
    rows, rmse_r, rmse_u, rmse_all = damage_fit_table(groups, mc["errors"], dec, mc["ratio"], pred_u, pred_r)
    table = [{"ber": float(ber), "trials": row.pop("rows"), **row} for ber, row in zip(bers, rows)]
    return {
        "format": fmt,
        "e50": e50,
        "k": k,
        "undecodable_per_error": u,
        "damage_seen": damaged,
        "rmse_retention_samples": rmse_samples,
        "rmse_retention_binned": rmse_r,
        "rmse_undecodable_binned": rmse_u,
        "rmse_score_share_binned": rmse_all,
        "trials": int(dec.size),
        "decodable_trials": int(dec.sum()),
        "mean_n_bits": float(mc["n_bits"].mean()),
        "min_n_bits": int(mc["n_bits"].min()),
        "max_n_bits": int(mc["n_bits"].max()),
        "table": table,
    }


# --- output ----------------------------------------------------------------------------


def write_yaml(out: Path, fits: dict[str, dict], args: argparse.Namespace, command: str, seconds: float) -> None:
    existing: dict = {}
    if out.is_file():
        try:
            loaded = yaml.safe_load(out.read_text(encoding="utf-8")) or {}
            existing = dict(loaded.get("formats", {})) if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            existing = {}
    formats = {fmt: existing[fmt] for fmt in FORMATS if fmt in existing}
    for fmt, f in fits.items():
        formats[fmt] = damage_yaml_entry(
            f["e50"], f["k"], f["undecodable_per_error"], f, trials=f["trials"], decodable_trials=f["decodable_trials"],
            n_bits_range=[f["min_n_bits"], f["max_n_bits"]],
        )
    formats = {fmt: formats[fmt] for fmt in FORMATS if fmt in formats}
    lines = [
        "# Damage part of the quality model: how much of an image's score survives bit errors.",
        "#",
        "# With e = ber * n_bits the expected bit errors in an image (n_bits of the encoded image):",
        "#   retention(e)     = 1 / (1 + (e / e50) ** k)        score share kept by images that decode",
        "#   p_undecodable(e) = 1 - exp(-e * undecodable_per_error)",
        "#   expected received score = gen_score * (1 - p_undecodable(e)) * retention(e)",
        "# One parameter set per image format; default_format is used when none is named.",
        "#",
        "# Made by Monte Carlo (scripts/fit_damage_model.py), not by hand:",
        f"#   {command}",
        f"# Surrogate images ({args.size}x{args.size} px, JPEG quality {args.jpeg_quality} with a restart marker",
        f"# per MCU row, PNG zlib level 3, raw = 8-byte header + RGB) of 1 in {args.prompt_stride} shipped prompts",
        f"# x {args.seeds} seed(s), each sent {args.repeats} time(s) at each of {args.bers} BERs log-spaced 1e-7..1e-2",
        "# through sim.model.channel.flip_bits, decoded, and scored by the fidelity assessor",
        f"# (score = gen_score * SSIM_luma ** {args.gamma:g}; 0 if undecodable). retention: least squares",
        "# (scipy curve_fit) over the decodable trials; undecodable_per_error: maximum likelihood.",
        f"# Root seed {args.seed}; {seconds:.0f} s on {args.workers} worker(s).",
        "#",
        "# Fit quality (binned = per BER, mean observed vs mean fitted):",
    ]
    kept = [fmt for fmt in formats if fmt not in fits]
    if kept:
        lines.insert(-2, f"# Entries for {', '.join(kept)} were kept from an earlier run (see their 'fit' keys).")
    for fmt, f in fits.items():
        lines.append(
            f"#   {fmt:4s}: e50={f['e50']:.4g} k={f['k']:.3g} undecodable_per_error={f['undecodable_per_error']:.3g}; "
            f"RMSE retention {f['rmse_retention_samples']:.3f} per image, {f['rmse_retention_binned']:.3f} binned; "
            f"P(undecodable) {f['rmse_undecodable_binned']:.3f} binned"
        )
        if not f["damage_seen"]:
            lines.append(
                f"#         no decodable {fmt} image showed damage (a bit error breaks a chunk CRC, so the image"
            )
            lines.append(f"#         does not decode at all): retention is 1, e50 set to {E50_NO_DAMAGE:g}.")
    lines.append("#")
    lines.append("# Per BER: mean expected errors e; undecodable share (observed / fit); retention of the decodable")
    lines.append("# images (observed / fit); score share kept over all images (observed / fit).")
    for fmt, f in fits.items():
        lines.append(f"#   {fmt}")
        lines.append("#        ber    mean e   undecodable   retention     score share")
        for r in f["table"]:
            ret = "    -  /  -  " if math.isnan(r["retention"]) else f"{r['retention']:.3f} / {r['retention_fit']:.3f}"
            lines.append(
                f"#   {r['ber']:8.2e} {r['mean_errors']:9.3g}   {r['undecodable']:.2f} / {r['p_undecodable_fit']:.2f}"
                f"   {ret}   {r['score_share']:.3f} / {r['score_share_fit']:.3f}"
            )
    lines.append("")
    body = {"default_format": "jpeg", "formats": formats}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + yaml.safe_dump(body, sort_keys=False, default_flow_style=None), encoding="utf-8")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--format", default=",".join(FORMATS), help="comma-separated formats to fit (default: all)")
    ap.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    ap.add_argument("--jpeg-quality", type=int, default=85)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--prompt-stride", type=int, default=2, help="use every n-th shipped prompt (default 2)")
    ap.add_argument("--seeds", type=int, default=2, help="images (seeds) per prompt (default 2)")
    ap.add_argument("--repeats", type=int, default=4, help="channel draws per image and BER (default 4)")
    ap.add_argument(
        "--bers", type=int, default=21, help="number of BER grid points, log-spaced 1e-7..1e-2 (default 21)"
    )
    ap.add_argument("--gamma", type=float, default=DEFAULT_SSIM_GAMMA, help="fidelity assessor's SSIM exponent")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=20240611, help="root seed of the channel draws")
    args = ap.parse_args(argv)

    fmts = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        ap.error(f"unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    for name in ("size", "prompt_stride", "seeds", "repeats", "bers", "workers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")

    prompts = load_prompts()[:: args.prompt_stride]
    bers = ber_grid(points=args.bers)
    command = "python scripts/fit_damage_model.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()
    fits: dict[str, dict] = {}
    for fmt in fmts:
        t = time.perf_counter()
        mc = monte_carlo(
            fmt, prompts, size=args.size, jpeg_quality=args.jpeg_quality, bers=bers, seeds=args.seeds,
            repeats=args.repeats, gamma=args.gamma, root_seed=args.seed, workers=args.workers,
        )
        fit = summarise(fmt, mc, bers)
        fits[fmt] = fit
        print(
            f"{fmt}: {fit['trials']} trials ({fit['decodable_trials']} decodable), n_bits {fit['min_n_bits']}.."
            f"{fit['max_n_bits']}, {time.perf_counter() - t:.1f} s\n"
            f"  e50={fit['e50']:.4g} k={fit['k']:.3g} undecodable_per_error={fit['undecodable_per_error']:.3g}  "
            f"RMSE retention {fit['rmse_retention_samples']:.3f} (per image) {fit['rmse_retention_binned']:.3f} "
            f"(binned), P(undecodable) {fit['rmse_undecodable_binned']:.3f} (binned)"
        )
    write_yaml(args.out, fits, args, command.strip(), time.perf_counter() - t0)
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
