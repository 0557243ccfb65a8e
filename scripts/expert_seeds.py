"""How many seeds per cell D needs for its expert to agree with the quality model's optimum.

    python scripts/expert_seeds.py [--profiles ratings,paper] [--seeds 4,16,64,256,512] [--out results/expert_seeds]

For each quality profile, builds the demonstration dataset D of the paper's prompting study
(``scenarios/paper/prompting.yaml``: its held-out prompts, all 7 strategies, 5 power levels) in the
statistical delivery mode with the largest number of seeds asked for, once with one run's prompt
effects (``prompt_effects=run``, as D was built before) and once with every seed from its own run
(``per_seed``); D with ``n`` seeds is the first ``n`` seed indices of it (its streams are keyed by seed
index). For each ``n`` it takes D's expert (:func:`sim.rl.prompt_expert.expert_table`: the best mean received
score per prompt and power, or the best mean generation score per prompt, pooled over the powers) and prints its agreement with
:class:`sim.rl.prompt_expert.ModelExpert` (the optimum as far as the prompt's text tells) over the
held-out (prompt, power) decisions, with a 95% interval clustered by prompt (a bootstrap over prompts),
and the build's wall time. Writes ``OUT/agreement.csv``.
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
from sim.dataset.demonstrations import build_demo_dataset  # noqa: E402
from sim.paper.prompting import FULL, make_split, scenario_with_profile  # noqa: E402
from sim.rl.prompt_expert import ModelExpert, expert_table  # noqa: E402
from sim.stats import cluster_bootstrap_mean  # noqa: E402


def agreement_table(profile: str, seeds: list[int], out: Path, prompt_effects: str) -> list[dict]:
    scenario = scenario_with_profile(profile)
    held = list(make_split(scenario, FULL).held_out)
    path = out / f"D-{profile}-{prompt_effects}-{max(seeds)}.parquet"
    t0 = time.perf_counter()
    if not path.exists():
        build_demo_dataset(scenario, path, prompts=held, seeds_per_strategy=max(seeds), seed=scenario.seed,
                           quiet=True, delivery="statistical", prompt_effects=prompt_effects)
    wall = time.perf_counter() - t0
    demo = pd.read_parquet(path)
    optimum = ModelExpert(build_quality_model(scenario))
    best = {p: optimum.action(p) for p in held}
    rows = []
    for score in ("received_score", "generation_score"):
        for n in seeds:
            table = expert_table(demo[demo["seed_index"] < n], score, pool_powers=score == "generation_score")
            hits = (table["strategy"].to_numpy() == table["prompt"].map(best).to_numpy()).astype(float)
            mean, low, high = cluster_bootstrap_mean(hits, table["prompt"].to_numpy(), seed=0)
            rows.append({"profile": profile, "prompt_effects": prompt_effects, "expert_score": score, "seeds": n,
                         "decisions": len(table), "agreement": mean, "low": low, "high": high,
                         "build_s_all_seeds": wall})
            print(f"{profile:8s} {prompt_effects:8s} {score:16s} {n:5d} seeds: agreement {mean:.3f} "
                  f"[{low:.3f}, {high:.3f}] over {len(table)} held-out decisions", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="ratings,paper")
    parser.add_argument("--seeds", default="4,16,64,256,512")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "expert_seeds")
    args = parser.parse_args(argv)
    seeds = sorted({int(s) for s in args.seeds.split(",")})
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for profile in args.profiles.split(","):
        for effects in ("run", "per_seed"):
            rows += agreement_table(profile, seeds, args.out, effects)
    pd.DataFrame(rows).to_csv(args.out / "agreement.csv", index=False)
    print(f"wrote {args.out / 'agreement.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
