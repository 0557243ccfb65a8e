"""Command line: ``python -m sim run|compare|validate``.

Bad input (a missing or broken scenario, an unknown agent, a bad parameter)
prints one line per problem to stderr and exits with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.base import AgentError
from sim.config import Scenario, ScenarioError, load_scenario

EXIT_BAD_INPUT = 2


def _seed_list(text: str) -> list[int]:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seeds, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("--seeds must be >= 1")
    return list(range(n))


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated agent names")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim", description="Simulator of intelligent mobile AIGC services.")
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a scenario file; exit 0 if good, 2 with one line per problem if not")
    v.add_argument("scenario", type=Path)

    r = sub.add_parser("run", help="run one replication of a scenario")
    r.add_argument("scenario", type=Path)
    r.add_argument("--out", type=Path, help="results directory (default results/<scenario>/<time>-seed<N>)")
    r.add_argument("--seed", type=int, help="root seed (default: the scenario's)")
    r.add_argument("--quiet", action="store_true", help="no progress bar, only the results directory")

    c = sub.add_parser("compare", help="run agents on the same seeds; report means with confidence intervals")
    c.add_argument("scenario", type=Path)
    c.add_argument("--agents", type=_names, help="provisioning agents, comma-separated (default: the scenario's)")
    c.add_argument("--prompt-agents", type=_names, help="prompt agents, comma-separated (default: the scenario's)")
    c.add_argument("--seeds", type=_seed_list, default=list(range(10)), help="number of seeds 0..N-1 (default 10)")
    c.add_argument("--first-seed", type=int, default=0, help="first root seed (default 0)")
    c.add_argument("--out", type=Path, help="results directory (default results/<scenario>/compare-<time>)")
    c.add_argument("--workers", type=int, help="parallel processes (default: CPU count)")
    c.add_argument("--quiet", action="store_true")
    return parser


def _load(path: Path) -> Scenario:
    return load_scenario(path)


def _cmd_validate(args) -> int:
    scenario = _load(args.scenario)
    print(f"{args.scenario}: ok (scenario {scenario.name!r})")
    return 0


def _cmd_run(args) -> int:
    from sim.runner import run_scenario

    scenario = _load(args.scenario)
    if args.seed is not None and args.seed < 0:
        raise ScenarioError("--seed", [f"--seed: must be >= 0, got {args.seed}"])
    output = run_scenario(scenario, out=args.out, seed=args.seed, quiet=args.quiet)
    s = output.result.summary
    if not args.quiet:
        print(
            f"{scenario.name} seed {output.result.seed}: {s['served_users']}/{s['users']} users served, "
            f"mean QoE {s['mean_qoe']:.3f}, mean utility {s['mean_utility']:.3f}, mean rounds {s['mean_rounds']:.2f}, "
            f"single-round success {s['single_round_success']:.2f}, mean latency {s['mean_latency_s']:.1f} s "
            f"({output.wall_time_s:.1f} s wall)"
        )
    print(output.out)
    return 0


def _cmd_compare(args) -> int:
    from sim.compare import compare, make_arms

    scenario = _load(args.scenario)
    arms = make_arms(scenario, args.agents or [scenario.provisioning_agent.name], args.prompt_agents)
    seeds = [args.first_seed + s for s in args.seeds]
    out, runs = compare(scenario, arms, seeds, out=args.out, workers=args.workers, quiet=args.quiet)
    if not args.quiet:
        means = runs.groupby("agent", sort=False)[["mean_qoe", "mean_utility", "single_round_success", "mean_rounds"]].mean()
        print(means.to_string(float_format=lambda v: f"{v:.3f}"))
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"validate": _cmd_validate, "run": _cmd_run, "compare": _cmd_compare}
    try:
        return handlers[args.command](args)
    except ScenarioError as err:
        for problem in err.problems:
            print(f"{err.source}: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AgentError as err:
        print(f"{args.scenario}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
