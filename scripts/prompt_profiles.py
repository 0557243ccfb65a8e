"""Raw prompts, always strategy 6 and the text-known optimum under each quality profile, in the world.

    python scripts/prompt_profiles.py [--seeds 10] [--out results/prompt_profiles]

Runs ``scenarios/prompt_strategies.yaml`` (60 users, one image per round at ample power, thresholds 7.5-8.5)
with ``quality.profile`` set to each of classic, ratings and paper, the three prompt agents on the same seeds
(``python -m sim compare`` per profile, reports under ``OUT/<profile>``), and prints single-round success with
its 95% interval over seeds and the optimum's paired lead over always-6. It also prints how many of the
content words of the paper study's held-out prompts occur in its demonstration prompts (what a policy can
learn of effects that follow words).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.config import load_scenario, parse_scenario  # noqa: E402
from sim.model.quality import content_words  # noqa: E402
from sim.paper.prompting import DEFAULT_SCENARIO, FULL, make_split  # noqa: E402
from sim.stats import mean_ci, paired_difference  # noqa: E402
from sim.world.compare import compare, make_arms  # noqa: E402

PROFILES = ("classic", "ratings", "paper")
AGENTS = ("raw", "empirical", "optimum")


def profile_table(seeds: int, out: Path) -> list[str]:
    """One line per profile: success of each prompt agent and the optimum's paired lead over always-6."""
    base = load_scenario(ROOT / "scenarios" / "prompt_strategies.yaml").model_dump(mode="json")
    lines = []
    for profile in PROFILES:
        data = {**base, "name": f"prompt_strategies_{profile}", "quality": {**base["quality"], "profile": profile}}
        scenario = parse_scenario(data, source=f"prompt_strategies.yaml with quality.profile: {profile}")
        _, runs = compare(scenario, make_arms(scenario, ["static"], list(AGENTS)), list(range(seeds)),
                          out=out / profile, quiet=True)
        success = {a: runs[runs["prompt_agent"] == a].sort_values("seed")["single_round_success"].to_numpy()
                   for a in AGENTS}
        cells = [f"{a} {m:.3f} [{lo:.3f}, {hi:.3f}]" for a in AGENTS for m, lo, hi in [mean_ci(success[a])]]
        d, lo, hi = paired_difference(success["optimum"], success["empirical"])
        ratio = success["optimum"].mean() / success["empirical"].mean()
        lines.append(f"{profile}: " + "; ".join(cells) + f"; optimum - always 6 {d:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                     f"({ratio:.2f}x)")
    return lines


def word_coverage() -> str:
    """How many content words of the paper study's held-out prompts its demonstration prompts contain."""
    split = make_split(load_scenario(DEFAULT_SCENARIO), FULL)
    seen = {w for p in split.train for w in content_words(p)}
    held = [w for p in split.held_out for w in set(content_words(p))]
    hits = sum(w in seen for w in held)
    return (f"paper study: {hits} of {len(held)} content words of the {len(split.held_out)} held-out prompts "
            f"({hits / len(held):.0%}) occur in its {len(split.train)} demonstration prompts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "prompt_profiles")
    args = parser.parse_args()
    for line in profile_table(args.seeds, args.out):
        print(line)
    print(word_coverage())


if __name__ == "__main__":
    main()
