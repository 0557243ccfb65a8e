"""Command line: ``python -m sim run|compare|sweep|validate|check-agent|train|train-prompt|paper|models|cache|demo-dataset|calibrate``.

Bad input (a missing or broken scenario, an unknown agent, a bad parameter, a
cache miss, a malformed dataset) prints one line per problem to stderr and
exits with status 2, no traceback; a backend that cannot run (a model that
does not load, an endpoint that is down) exits with 1. ``SIM_DEBUG=1`` shows
tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from pathlib import Path

from sim.config import Scenario, ScenarioError, load_scenario
from sim import registry
from sim.dataset.demonstrations import DEFAULT_POWERS_W
from sim.executors import ExecutorError
from sim.registry import RegistryError
from sim.rl.checkpoints import PROMPT_ALGORITHMS, PROVISIONING_ALGORITHMS
from sim.rl.prompt_features import EMBEDDINGS
from sim.validation import first_line

EXIT_BAD_INPUT = 2
#: Every assessment of the run failed: its scores are not the assessor's (the run is written, with a warning).
EXIT_ASSESSMENTS_FAILED = 3


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


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _executor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=["local", "dask", "ray"], default="local",
                        help="where runs execute: local processes (default), a Dask cluster or Ray (extras dask, ray); "
                        "results are identical")
    parser.add_argument("--address", help="the cluster to join: a Dask scheduler (tcp://host:8786) or Ray (auto, "
                        "ray://host:10001); default: a local cluster of --workers processes")
    parser.add_argument("--workers", type=_workers, help="parallel processes (default: CPU count)")


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
    r.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="write the trace and users to Parquet in chunks as the run goes, keeping memory bounded "
                   "(default: from 10,000 users)")
    r.add_argument("--overwrite", action="store_true", help="replace a run already in --out (refused otherwise)")
    r.add_argument("--shards", type=int, default=1, help="simulate the MASPs in this many processes (nearest "
                   "association, agents that decide per observation); same results, less wall time (default 1)")

    c = sub.add_parser("compare", help="run agents on the same seeds; report means with confidence intervals")
    c.add_argument("scenario", type=Path)
    c.add_argument("--agents", type=_names, help="provisioning agents, comma-separated: labels of the scenario's "
                   "compare.provisioning_agents (agents with parameters) or names (default: the compare section's, "
                   f"else the scenario's agent); registered: {registry.PROVISIONING_AGENTS.describe()}, or "
                   "package.module:Class")
    c.add_argument("--prompt-agents", type=_names, help="prompt agents, comma-separated (default: the scenario's); "
                   f"registered: {registry.PROMPT_AGENTS.describe()}, or package.module:Class")
    c.add_argument("--seeds", type=_seed_list, default=list(range(10)), help="number of seeds 0..N-1 (default 10)")
    c.add_argument("--first-seed", type=int, default=0, help="first root seed (default 0)")
    c.add_argument("--out", type=Path, help="results directory (default results/<scenario>/compare-<time>)")
    _executor_options(c)
    c.add_argument("--quiet", action="store_true")

    sw = sub.add_parser("sweep", help="every grid cell x agent x seed on the same seeds; resumable; tidy results and "
                        "plots against each swept parameter")
    sw.add_argument("scenario", type=Path)
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a swept parameter: a dotted scenario key (masps.0.gpus, masps.*.p_total_w) and its values; "
                    "repeat for more parameters (every combination runs)")
    sw.add_argument("--agents", type=_names, help="provisioning agents, as for compare (default: the compare section's, "
                    "else the scenario's agent)")
    sw.add_argument("--prompt-agents", type=_names, help="prompt agents, comma-separated (default: the scenario's)")
    sw.add_argument("--seeds", type=_seed_list, default=list(range(10)), help="number of seeds 0..N-1 (default 10)")
    sw.add_argument("--first-seed", type=int, default=0, help="first root seed (default 0)")
    sw.add_argument("--out", type=Path, help="results directory (default results/<scenario>/sweep); rerun with the "
                    "same --out to resume")
    _executor_options(sw)
    sw.add_argument("--quiet", action="store_true")

    ca = sub.add_parser("check-agent", help="check that an agent keeps the decision contract (shapes, bounds, budget, "
                        "determinism under a seed)")
    ca.add_argument("name", help="a registered agent name or package.module:Class")
    ca.add_argument("--kind", choices=["provisioning", "prompt"], default="provisioning")
    ca.add_argument("--params", type=_json_object, default={}, help="the agent's parameters as a JSON object")
    ca.add_argument("--scenario", type=Path, help="scenario to draw observations from (default: the built-in one)")
    ca.add_argument("--seed", type=int, default=0)

    m = sub.add_parser("models", help="local model helpers")
    msub = m.add_subparsers(dest="models_command", required=True)
    bt = msub.add_parser("build-tiny", help="build tiny Stable Diffusion and CLIP models from configs (no download)")
    bt.add_argument("dir", type=Path)
    bt.add_argument("--seed", type=int, default=0)

    k = sub.add_parser("cache", help="generation cache")
    ksub = k.add_subparsers(dest="cache_command", required=True)
    kb = ksub.add_parser("build", help="fill a cache directory from any generator backend")
    kb.add_argument("scenario", type=Path)
    kb.add_argument("--out", type=Path, required=True, help="cache directory")
    kb.add_argument("--prompts", type=int, default=32, help="prompts from the shipped set (default 32)")
    kb.add_argument("--seeds", type=int, default=4, help="seeds per prompt and strategy (default 4)")
    kb.add_argument("--strategies", type=_ints, default=list(range(7)), help="comma-separated strategy ids (default 0-6)")
    kb.add_argument("--backend", choices=_generating_backends(), help="generator (default: the scenario's)")
    kb.add_argument("--no-score", action="store_true", help="do not score images with the scenario's assessor")
    kb.add_argument("--seed", type=int, help="root seed (default: the scenario's)")
    kb.add_argument("--quiet", action="store_true")

    d = sub.add_parser("demo-dataset", help="build the demonstration dataset D (prompts x strategies x seeds x powers)")
    d.add_argument("scenario", type=Path)
    d.add_argument("--out", type=Path, required=True, help="output Parquet file")
    d.add_argument("--prompts", type=int, default=32, help="demonstration prompts (default 32)")
    d.add_argument("--seeds", type=int, default=4, help="seeds per prompt and strategy (default 4)")
    d.add_argument("--strategies", type=_ints, default=list(range(7)))
    d.add_argument("--powers", type=_floats, default=list(DEFAULT_POWERS_W), help="transmit powers, W")
    d.add_argument("--distance", type=float, default=100.0, help="user distance, m (default 100)")
    d.add_argument("--seed", type=int, help="root seed (default: the scenario's)")
    d.add_argument("--backend", choices=registry.GENERATORS.names(), help="generator (default: the scenario's)")
    d.add_argument("--checkpoint-every", type=int, default=4, help="prompts between partial saves (default 4)")
    d.add_argument("--delivery", choices=["bytes", "statistical"],
                   help="real image bytes, or scores and damage from the quality model (surrogate only, ~1000x "
                   "faster; default: the scenario's channel.delivery)")
    d.add_argument("--prompt-effects", choices=["run", "per_seed"], default="run",
                   help="one run's prompt effects for all of D, or every seed from its own run (default run)")
    d.add_argument("--quiet", action="store_true")

    t = sub.add_parser("train", help="train a provisioning agent on sim/Provisioning-v0")
    t.add_argument("scenario", type=Path)
    t.add_argument("--agent", required=True, choices=list(PROVISIONING_ALGORITHMS))
    t.add_argument("--steps", type=int, required=True, help="environment steps in total")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, help="output directory (default results/train/<scenario>/<agent>-seed<S>)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    t.add_argument("--trust-checkpoint", action="store_true", help="with --resume: unpickle a stable-baselines3 "
                   "checkpoint that its checkpoint.json does not vouch for (a checkpoint is code: only your own)")
    t.add_argument("--quiet", action="store_true")

    pp = sub.add_parser("paper", help="reproduce the paper's figures and write the paper-comparison report")
    pp.add_argument("part", nargs="?", default="all",
                    choices=["all", "provisioning", "provisioning-epoch", "provisioning-world", "multimodality",
                             "prompting"],
                    help="which reproduction (default all; provisioning = both settings, the paper's one-epoch "
                    "problem (Figs. 14-15) and the sequential world; multimodality = where a diffusion actor should "
                    "matter; the report covers what has been run)")
    pp.add_argument("--quick", action="store_true", help="tiny budgets: a smoke check in minutes, not the figures")
    pp.add_argument("--out", type=Path, help="output directory (default results/paper, results/paper-quick with --quick)")
    pp.add_argument("--jobs", type=int, help="parallel training processes (default: 2, or 1 on a 1-core machine)")
    pp.add_argument("--executor", choices=["local", "dask", "ray"], default="local",
                    help="where training and evaluation runs execute (extras dask, ray; default local processes)")
    pp.add_argument("--address", help="the Dask scheduler or Ray cluster to join (default: a local one of --jobs workers)")
    pp.add_argument("--quality-profile", choices=["classic", "ratings", "paper"],
                    help="the prompting part's quality.profile (default: its scenario's, ratings), into "
                    "prompting-<profile>/ beside it; the report says which, and that paper is calibrated to the "
                    "paper's results")

    tp = sub.add_parser("train-prompt", help="train a prompt-engineering policy on sim/Prompt-v0 (GAIL or PPO)")
    tp.add_argument("scenario", type=Path)
    tp.add_argument("--agent", required=True, choices=list(PROMPT_ALGORITHMS))
    tp.add_argument("--steps", type=int, required=True, help="environment steps (service rounds) in total")
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--out", type=Path, help="output directory (default results/train-prompt/<scenario>/<agent>-seed<S>)")
    tp.add_argument("--demo", type=Path, help="demonstration dataset D (python -m sim demo-dataset); GAIL builds one "
                    "for its training prompts when omitted")
    tp.add_argument("--train-prompts", type=int, default=32, help="demonstration prompts; the rest are held out (default 32)")
    tp.add_argument("--split-seed", type=int, default=0, help="seed of the train / held-out split (default 0)")
    tp.add_argument("--expert", choices=["demo", "model"], default="demo",
                    help="GAIL imitates D's best strategies (demo, default) or the quality model's optimum (model)")
    tp.add_argument("--embedding", choices=list(EMBEDDINGS), default="features",
                    help="prompt representation in the state (default features)")
    tp.add_argument("--quiet", action="store_true")

    cal = sub.add_parser("calibrate", help="fit the quality model from a demonstration dataset")
    cal.add_argument("dataset", type=Path)
    cal.add_argument("--out", type=Path, required=True, help="generation YAML; the damage YAML goes beside it")
    return parser


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _generating_backends() -> list[str]:
    """Generator backends that make images (every registered one but the cache itself)."""
    return [name for name in registry.GENERATORS.names() if name != "cache"]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _load(path: Path) -> Scenario:
    return load_scenario(path)


def _load_checked(path: Path) -> Scenario:
    """The scenario, refused (one line per problem) if ``run`` would fail on its files or agents."""
    from sim.validation import scenario_problems

    scenario = load_scenario(path)
    problems = scenario_problems(scenario)
    if problems:
        raise ScenarioError(str(path), problems)
    return scenario


def _cmd_validate(args) -> int:
    scenario = _load_checked(args.scenario)
    print(f"{args.scenario}: ok (scenario {scenario.name!r})")
    return 0


def _cmd_check_agent(args) -> int:
    from sim.agent_checker import AgentContractError, check_prompt_agent, check_provisioning_agent

    scenario = _load(args.scenario) if args.scenario is not None else None
    check = check_provisioning_agent if args.kind == "provisioning" else check_prompt_agent
    try:
        check(args.name, args.params, scenario, seed=args.seed)
    except AgentContractError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.kind} agent {args.name!r}: keeps the contract")
    return 0


def _cmd_run(args) -> int:
    from sim.world.records import conservation_line
    from sim.world.runner import all_assessments_failed, assessment_warnings, run_scenario

    scenario = _load_checked(args.scenario)
    if args.seed is not None and args.seed < 0:
        raise ScenarioError("--seed", [f"must be >= 0, got {args.seed}"])
    if args.shards < 1:
        raise ScenarioError("--shards", [f"must be >= 1, got {args.shards}"])
    output = run_scenario(scenario, out=args.out, seed=args.seed, quiet=args.quiet, stream=args.stream,
                          shards=args.shards, overwrite=args.overwrite)
    s = output.result.summary
    for warning in assessment_warnings(output.result):
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(
            f"{scenario.name} seed {output.result.seed}: {s['served_users']}/{s['users']} users served, "
            f"mean QoE {s['mean_qoe']:.3f}, mean utility {s['mean_utility']:.3f}, mean rounds {s['mean_rounds']:.2f}, "
            f"single-round success {s['single_round_success']:.2f}, mean latency {s['mean_latency_s']:.1f} s "
            f"({output.wall_time_s:.1f} s wall)"
        )
        if output.result.conservation is not None and (scenario.faults.any or not output.result.conservation["holds"]):
            print(conservation_line(output.result.conservation))
    print(output.out)
    if all_assessments_failed(output.result):
        return EXIT_ASSESSMENTS_FAILED
    return 0


def _cmd_compare(args) -> int:
    from sim.world.compare import compare, default_compare_dir, make_arms

    scenario = _load_checked(args.scenario)
    arms = make_arms(scenario, args.agents, args.prompt_agents)
    seeds = [args.first_seed + s for s in args.seeds]
    out = args.out if args.out is not None else default_compare_dir(scenario)
    try:
        out, runs = compare(scenario, arms, seeds, out=out, workers=args.workers, quiet=args.quiet,
                            executor=args.executor, address=args.address)
    except KeyboardInterrupt:
        print(f"interrupted; finished runs are kept in {out}: add --out {out} to the same command to resume",
              file=sys.stderr)
        return 130
    if not args.quiet:
        means = runs.groupby("agent", sort=False)[["mean_qoe", "mean_utility", "single_round_success", "mean_rounds"]].mean()
        print(means.to_string(float_format=lambda v: f"{v:.3f}"))
    print(out)
    return 0


def _cmd_sweep(args) -> int:
    from sim.executors import check_executor
    from sim.world.compare import make_arms
    from sim.world.sweep import parse_grid, sweep

    scenario = _load_checked(args.scenario)
    grid = parse_grid(args.grid)
    arms = make_arms(scenario, args.agents, args.prompt_agents)
    check_executor(args.executor, args.address)
    if args.first_seed < 0:
        raise ScenarioError("--first-seed", [f"must be >= 0, got {args.first_seed}"])
    seeds = [args.first_seed + s for s in args.seeds]
    out = args.out or Path("results") / scenario.name / "sweep"
    try:
        results = sweep(scenario, grid, arms, seeds, out, executor=args.executor, workers=args.workers,
                        address=args.address, quiet=args.quiet, log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt:
        print(f"interrupted; finished runs are kept in {out}: rerun the same command to resume", file=sys.stderr)
        return 130
    if not args.quiet:
        means = results.groupby([*grid, "agent"], sort=False)[["mean_utility", "mean_qoe", "mean_latency_s"]].mean()
        print(means.to_string(float_format=lambda v: f"{v:.3f}"))
    print(out)
    return 0


def _cmd_models(args) -> int:
    from sim.models.tiny import build_tiny_models

    paths = build_tiny_models(args.dir, seed=args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_cache(args) -> int:
    from sim.dataset.cache_builder import build_cache

    scenario = _load(args.scenario)
    summary = build_cache(
        scenario,
        args.out,
        prompts=None,
        strategies=args.strategies,
        seeds_per_prompt=args.seeds,
        backend=args.backend,
        quiet=args.quiet,
        n_prompts=args.prompts,
        score=not args.no_score,
        seed=args.seed,
    )
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def _cmd_demo_dataset(args) -> int:
    from sim.dataset.demonstrations import build_demo_dataset, partial_path_for

    scenario = _load(args.scenario)
    try:
        summary = build_demo_dataset(
            scenario,
            args.out,
            n_prompts=args.prompts,
            strategies=args.strategies,
            seeds_per_strategy=args.seeds,
            power_levels_w=tuple(args.powers),
            distance_m=args.distance,
            seed=scenario.seed if args.seed is None else args.seed,
            quiet=args.quiet,
            checkpoint_every=args.checkpoint_every,
            backend=args.backend,
            delivery=args.delivery,
            prompt_effects=args.prompt_effects,
        )
    except KeyboardInterrupt:
        print(
            f"interrupted; partial results in {partial_path_for(args.out)}; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    print(summary.describe())
    return 0


def _cmd_calibrate(args) -> int:
    from sim.dataset.calibration import calibrate

    if not args.dataset.exists():
        print(f"{args.dataset}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = calibrate(args.dataset, args.out)
    print(result.report())
    return 0


def _cmd_train(args) -> int:
    from sim.rl.training import final_utility, train

    scenario = _load(args.scenario)
    out = args.out or Path("results") / "train" / scenario.name / f"{args.agent}-seed{args.seed}"
    result = train(scenario, args.agent, args.steps, args.seed, out, resume=args.resume, quiet=args.quiet,
                   trust=args.trust_checkpoint)
    if not args.quiet:
        print(
            f"{args.agent} seed {args.seed}: {result.steps} steps, final evaluation utility "
            f"{final_utility(result.curve):.3f} per decision ({result.wall_time_s:.0f} s)"
        )
    print(out)
    return 0


def _cmd_train_prompt(args) -> int:
    from sim.rl.prompt_training import train_prompt_policy

    scenario = _load(args.scenario)
    if args.demo is not None and not args.demo.exists():
        print(f"{args.demo}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or Path("results") / "train-prompt" / scenario.name / f"{args.agent}-seed{args.seed}"
    result = train_prompt_policy(scenario, args.agent, args.steps, args.seed, out, demo=args.demo,
                                 n_train=args.train_prompts, split_seed=args.split_seed, embedding=args.embedding,
                                 expert_source=args.expert, quiet=args.quiet)
    if not args.quiet:
        last = result.curve.iloc[-1]
        print(f"prompt {args.agent} seed {args.seed}: {result.steps} steps; on {len(result.split.held_out)} held-out "
              f"prompts: received score {last['score']:.3f}, single-round success {last['success']:.3f}, "
              f"agreement with the expert {last['agreement']:.3f} ({result.wall_time_s:.0f} s)")
    print(result.checkpoint)
    return 0


def _cmd_paper(args) -> int:
    from sim.paper.run import run_paper

    out = args.out or Path("results") / ("paper-quick" if args.quick else "paper")
    if args.jobs is not None and args.jobs < 1:
        raise ScenarioError("--jobs", [f"must be >= 1, got {args.jobs}"])
    report = run_paper(out, part=args.part, quick=args.quick, jobs=args.jobs, executor=args.executor,
                       address=args.address, quality_profile=args.quality_profile)
    print(report)
    return 0


#: Optional packages and the extra that installs them (``pip install -e ".[extra]"``).
_EXTRAS = {"torch": "learn", "stable_baselines3": "learn", "diffusers": "real", "transformers": "real",
           "accelerate": "real", "sentence_transformers": "real", "openai": "real", "brisque": "real", "cv2": "real"}


def _missing_package_message(err: ModuleNotFoundError) -> str:
    """One line naming the extra that provides a missing optional package."""
    found = re.search(r"No module named '([^']+)'", str(err))
    name = (err.name or (found.group(1) if found else "")).split(".")[0]
    extra = _EXTRAS.get(name)
    if extra is None:
        return f"error: missing Python package {name!r} ({err})"
    return (f"error: this needs the optional package {name!r}: install torch==2.13.0 first, then "
            f"pip install -e \".[{extra}]\" (see the README)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "validate": _cmd_validate,
        "check-agent": _cmd_check_agent,
        "run": _cmd_run,
        "compare": _cmd_compare,
        "sweep": _cmd_sweep,
        "models": _cmd_models,
        "cache": _cmd_cache,
        "demo-dataset": _cmd_demo_dataset,
        "calibrate": _cmd_calibrate,
        "train": _cmd_train,
        "train-prompt": _cmd_train_prompt,
        "paper": _cmd_paper,
    }
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # SIGTERM stops a command as Ctrl-C does
    try:
        return handlers[args.command](args)
    except ScenarioError as err:
        for problem in err.problems:
            print(f"{err.source}: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RegistryError as err:  # an unknown or unbuildable agent or backend (AgentError is one)
        print(f"{getattr(args, 'scenario', None) or args.name}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ExecutorError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as err:
        if os.environ.get("SIM_DEBUG"):
            raise
        print(_missing_package_message(err), file=sys.stderr)
        return 1
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        # Bad input to a backend (a cache miss, a model that cannot be loaded, an endpoint that is down,
        # a malformed dataset): one line. SIM_DEBUG=1 shows the traceback.
        if os.environ.get("SIM_DEBUG"):
            raise
        message = first_line(err)
        print(f"error: {type(err).__name__}: {message} (SIM_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(err, (ValueError, KeyError)) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
