"""Round trip of the calibration: build D from the surrogate world, fit, compare with the truth.

The surrogate generator draws each image's score from the shipped quality model
(``sim/data/quality_generation.yaml``) and the fidelity assessor scores what
arrives over the channel. Calibrating a demonstration dataset D built from that
pair (``sim/dataset/demonstrations.py`` -> ``sim/dataset/calibration.py``) should give back the
model's own parameters, up to statistical error. This script prints, per
parameter, the true value, the recovered one, the error and the fit's standard
error (cluster-robust by prompt for the means; ANOVA delta method for the SDs):

* ``mean``: every strategy's mean score at c = 0 and c = 1 (population truth; the
  error includes which prompt effects happened to be drawn);
* ``difference``: each strategy minus raw at c = 0 and 1 (prompt effects cancel);
* ``spread``: seed_sd and prompt_sd;
* ``conditional``: the same targets given the prompt effects actually drawn, so
  only seed noise remains;
* ``damage``: e50, k, undecodable_per_error and the retention curve. The truth is
  the shipped ``sim/data/quality_damage.yaml`` when the images have its size (256 px)
  and otherwise a Monte Carlo of ``scripts/fit_damage_model.py``'s method on D's
  own images (``--damage-reference mc`` forces it).

Usage::

    python scripts/calibration_roundtrip.py [--prompts 64] [--seeds 8] [--size 256]
        [--powers 0.05,0.1,0.2,0.4,0.8] [--distance 100] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.backends import build_generator, build_quality_model  # noqa: E402
from sim.config import load_scenario  # noqa: E402
from sim.dataset.calibration import calibrate, compare_with_model, damage_reference  # noqa: E402
from sim.dataset.demonstrations import build_demo_dataset  # noqa: E402
from sim.generation.base import GenerationRequest  # noqa: E402
from sim.model.quality import DamageParams  # noqa: E402
from sim.seeding import RandomStreams  # noqa: E402

#: Image size of the shipped damage fit (see the header of sim/data/quality_damage.yaml).
SHIPPED_DAMAGE_SIZE = 256


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "three_users.yaml")
    ap.add_argument("--prompts", type=int, default=64, help="demonstration prompts (default 64)")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per (prompt, strategy) (default 8)")
    ap.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    ap.add_argument("--powers", default="0.05,0.1,0.2,0.4,0.8", help="transmit powers, W")
    ap.add_argument("--distance", type=float, default=100.0, help="distance, m (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--damage-reference", choices=("auto", "shipped", "mc"), default="auto")
    ap.add_argument("--out", type=Path, help="directory for D, the fitted YAML and the table (default: temporary)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    base = load_scenario(args.scenario)
    scenario = base.model_copy(update={"generator": base.generator.model_copy(update={"image_size": args.size})})
    powers = tuple(float(p) for p in args.powers.split(","))
    out = args.out or Path(tempfile.mkdtemp(prefix="roundtrip-"))
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    summary = build_demo_dataset(
        scenario, out / "D.parquet", n_prompts=args.prompts, seeds_per_strategy=args.seeds, power_levels_w=powers,
        distance_m=args.distance, seed=args.seed, quiet=args.quiet,
    )
    t_build = time.perf_counter() - t0
    print(summary.describe())
    t1 = time.perf_counter()
    result = calibrate(out / "D.parquet", out / "quality.yaml")
    t_fit = time.perf_counter() - t1
    print(result.report())

    truth = build_quality_model(scenario)
    key = RandomStreams(args.seed).integer_seed("prompt_effect")
    d = pd.read_parquet(out / "D.parquet")
    realized = d.drop_duplicates("prompt")[["prompt", "complexity"]].reset_index(drop=True)
    realized["offset"] = [truth.prompt_offset(p, key) for p in realized["prompt"]]

    use_mc = args.damage_reference == "mc" or (args.damage_reference == "auto" and args.size != SHIPPED_DAMAGE_SIZE)
    if use_mc:
        # the Monte Carlo of scripts/fit_damage_model.py on D's own renderer and size (raw prompts, strategy 0)
        gen = build_generator(scenario, truth, key)
        images = []
        for text in realized["prompt"]:
            req = GenerationRequest(raw_prompt=text, prompt=text, strategy=0, seeds=(1, 2))
            images.extend(im for im in gen.generate(req) if im.generation_score)
        bers = np.logspace(-7, -2, 21)
        ref = damage_reference(images, bers, 4, np.random.default_rng(20240611))
        truth.damage = DamageParams(ref.e50, ref.k, ref.undecodable_per_error, source=ref.source)
        damage_truth = f"Monte Carlo of fit_damage_model.py's method at {args.size} px ({len(images)} images x 21 BERs x 4)"
    else:
        damage_truth = f"shipped {truth.damage.source}"
    table = compare_with_model(result, truth, realized=realized)
    table["error_over_se"] = table["error"] / table["se"]
    table["relative_error"] = table["error"] / table["true"].abs()
    table.to_csv(out / "roundtrip.csv", index=False)

    print()
    print(
        f"Round trip: {summary.prompts} prompts x {len(summary.strategies)} strategies x {summary.seeds_per_strategy} "
        f"seeds x {len(powers)} powers, {args.size} px; D built in {t_build:.1f} s, fitted in {t_fit:.1f} s"
    )
    print(f"damage truth: {damage_truth}")
    print(f"{'group':12s} {'parameter':28s} {'true':>9s} {'recovered':>10s} {'error':>9s} {'SE':>7s} {'err/SE':>7s}")
    for r in table.itertuples():
        se = "" if math.isnan(r.se) else f"{r.se:7.3f}"
        z = "" if math.isnan(r.error_over_se) else f"{r.error_over_se:7.2f}"
        print(f"{r.group:12s} {r.parameter:28s} {r.true:9.4g} {r.recovered:10.4g} {r.error:+9.3g} {se:>7s} {z:>7s}")
    for group, sub in table.groupby("group", sort=False):
        z = sub["error_over_se"].abs()
        rel = sub["relative_error"].abs()
        zs = f"max |err/SE| {z.max():.2f}, RMS err/SE {math.sqrt((z**2).mean()):.2f}" if z.notna().any() else ""
        print(f"  {group:12s} max |error| {sub['error'].abs().max():.3g}, max relative {rel.max():.1%}  {zs}")
    print(f"written: {out}/D.parquet, quality.yaml, quality.damage.yaml, roundtrip.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
