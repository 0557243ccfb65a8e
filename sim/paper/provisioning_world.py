"""The provisioning comparison in the sequential world: learners trained on ``sim/World-v0``, compared in the world.

The paper's Figs. 14-15 (:mod:`sim.paper.provisioning`) pose a one-epoch problem:
fresh users every decision, a contextual bandit. Here the same MASP, channel and
costs serve users who arrive as a Poisson process, wait in the queue and come back
for more rounds (``scenarios/paper/provisioning_world.yaml``), so a decision
changes who waits and for how long at later decisions and ``gamma > 0`` matters.
:func:`reproduce` does, into ``out`` (default ``results/paper/provisioning_world``):

1. **Tuning** (:func:`tune`, ``tuning.csv``, ``chosen.json``): each learner (D3PG,
   its MLP-actor ablation DDPG, PPO, SAC) on a small grid of discount and learning
   rate, one run each on the tuning seed; a configuration is scored by its
   training curve's last two points, which are evaluated on the *curve episodes*
   (worlds ``1,000,000 + 1000 tuning_seed + i``). No world that the final
   comparison uses is ever met in tuning or training (training episodes draw
   their seeds at or above ``sim.rl.world_env.TRAINING_SEED_BASE``).
2. **Training** (:func:`train_all`, ``curves.csv``): every learner with its chosen
   configuration on every training seed, and D3PG with the paper's raw penalised
   action (``d3pg_penalised``, same configuration), in ``jobs`` processes.
3. **Curve levels** (``levels.csv``): static, "N = max, equal power", the
   one-round oracle and the lookahead oracle on the same curve episodes, so a
   curve can be read against them; ``time_to_lookahead.csv``: the first point at
   which each run comes within 5% of the lookahead oracle.
4. **The comparison in the world** (``runs.csv``): every baseline on every
   evaluation seed, and every trained policy (each learner, each training run)
   on every evaluation seed, through the world itself (:func:`sim.world.compare.run_arm_seed`,
   the code ``python -m sim compare`` runs). A learner's value on a world seed is
   the mean over its training runs (``table.csv``, paired by world seed); the
   spread over training runs is reported beside it (``training_runs.csv``).
5. **Claims** (``claims.csv``): paired differences over the evaluation seeds with
   95% intervals, wins per seed, paired t-tests and Holm's correction across the
   table; the paper's +67.8% (D3PG over SAC) and +7.0% (over PPO) are tested for
   magnitude, not only sign.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sim.config import AgentConfig, Scenario, load_scenario, scenario_to_yaml
from sim.executors import run_tasks
from sim.paper.common import fmt_ci, magnitude_verdict, plot_mean_ci, pyplot, verdict, wall_time_sentence, save_figure
from sim.stats import holm_adjust, mean_ci, paired_difference, paired_t_test

LEARNERS = ("d3pg", "ddpg", "ppo", "sac")
#: D3PG trained on the paper's raw action with the eq. 22 penalty (``training.action_mapping: penalised``).
PENALISED = "d3pg_penalised"
TRAINED = (*LEARNERS, PENALISED)
#: Baselines (:func:`baseline_configs`): the paper's static N = 4, the best uniform N on the tuning seed's
#: curve episodes (``static_tuned``), N = N_max, the one-round oracle and the lookahead oracle.
BASELINES = ("static", "static_tuned", "n_max", "oracle", "lookahead")
LABELS = {"d3pg": "D3PG", "ddpg": "DDPG (MLP actor)", "ppo": "PPO", "sac": "SAC",
          PENALISED: "D3PG, paper's penalised raw action", "static": "static (N=4, equal P)",
          "static_tuned": "static, best N (tuned), equal P",
          "n_max": "N = max, equal P", "oracle": "one-round oracle", "lookahead": "lookahead oracle"}
COLORS = {"d3pg": "tab:red", "ddpg": "tab:purple", "ppo": "tab:blue", "sac": "tab:green", PENALISED: "tab:orange",
          "static": "tab:gray", "static_tuned": "tab:cyan", "n_max": "tab:brown", "oracle": "tab:olive",
          "lookahead": "black"}
DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "paper" / "provisioning_world.yaml"
#: A run has come "within 5%" of the lookahead oracle at ``U >= U_lookahead - 0.05 |U_lookahead|``.
LOOKAHEAD_TOLERANCE = 0.05


def tuning_grid(learner: str, quick: bool = False) -> list[dict[str, Any]]:
    """The configurations tried per learner: discount x learning rate (two discounts only in quick mode)."""
    lrs = (1.0e-3,) if quick else (3.0e-4, 1.0e-3)
    grid = []
    for gamma in (0.9, 0.99):
        for lr in lrs:
            if learner in ("d3pg", "ddpg"):
                grid.append({"gamma": gamma, "actor_lr": lr, "critic_lr": lr})
            else:
                grid.append({"gamma": gamma, "learning_rate": lr})
    return grid


@dataclass(frozen=True)
class WorldBudget:
    """How much of the sequential comparison to run (``FULL`` for the report, ``QUICK`` for a smoke check)."""

    #: Environment steps (decisions) per final training run, and per tuning run.
    steps: int
    tuning_steps: int
    #: Training seeds of the final runs; the seed of the tuning runs (and of the curve episodes).
    train_seeds: tuple[int, ...]
    tuning_seed: int
    #: World root seeds of the comparison (never met in tuning or training).
    eval_seeds: tuple[int, ...]
    #: Steps between curve points; curve episodes per point.
    eval_every: int
    eval_episodes: int
    #: Rollouts per candidate of the lookahead oracle.
    lookahead_rollouts: int
    #: Users per world run (``None``: the scenario's).
    n_users: int | None = None
    quick: bool = False


FULL = WorldBudget(steps=12_000, tuning_steps=8_000, train_seeds=tuple(range(1, 11)), tuning_seed=0,
                   eval_seeds=tuple(range(100, 110)), eval_every=1_000, eval_episodes=4, lookahead_rollouts=256)
QUICK = WorldBudget(steps=400, tuning_steps=200, train_seeds=(1, 2), tuning_seed=0, eval_seeds=(100, 101),
                    eval_every=200, eval_episodes=1, lookahead_rollouts=8, n_users=6, quick=True)


def study_scenario(scenario: Scenario, budget: WorldBudget) -> Scenario:
    """The scenario with the budget's users and curve settings (every run's curve on the tuning seed's episodes)."""
    training = scenario.training.model_copy(update={
        "env": "world", "eval_every_steps": budget.eval_every, "eval_episodes": budget.eval_episodes,
        "eval_seed": budget.tuning_seed, "checkpoint_every_steps": max(budget.steps, 1)})
    update: dict[str, Any] = {"training": training}
    if budget.n_users is not None:
        update["arrivals"] = scenario.arrivals.model_copy(update={"n_users": budget.n_users})
    return scenario.model_copy(update=update)


def _with_hyperparameters(scenario: Scenario, algorithm: str, config: dict[str, Any], penalised: bool = False) -> Scenario:
    t = scenario.training
    hyper = {**t.hyperparameters, algorithm: {**t.hyperparameters.get(algorithm, {}), **config}}
    update: dict[str, Any] = {"hyperparameters": hyper}
    if penalised:
        update["action_mapping"] = "penalised"
    return scenario.model_copy(update={"training": t.model_copy(update=update)})


def _algorithm(label: str) -> str:
    return "d3pg" if label == PENALISED else label


# ---------------------------------------------------------------------------
# training runs (tuning and final), in worker processes


def _steps_done(run_dir: Path) -> int:
    meta = run_dir / "checkpoints" / "latest" / "checkpoint.json"
    return int(json.loads(meta.read_text(encoding="utf-8"))["steps"]) if meta.exists() else 0


def _train_one(scenario: Scenario, algorithm: str, seed: int, steps: int, run_dir: Path) -> tuple[str, float]:
    """One training run (one torch thread: the runs share the cores); resumes an interrupted one."""
    import torch

    from sim.rl.training import train

    torch.set_num_threads(1)
    done = _steps_done(run_dir)
    if done >= steps:
        return str(run_dir), 0.0
    result = train(scenario, algorithm, steps, seed, run_dir, resume=done > 0, quiet=True)
    return str(run_dir), result.wall_time_s


def _run_tasks(tasks: list[tuple[Scenario, str, int, int, Path]], jobs: int, log: Callable[[str], None]) -> None:
    todo = [t for t in tasks if _steps_done(t[4]) < t[3]]
    if not todo:
        return
    log(f"training {len(todo)} runs in {jobs} processes")
    for run_dir, wall in run_tasks(_train_one, todo, workers=jobs):
        log(f"  {Path(run_dir).name}: {wall:.0f} s")


def _curve_score(curve: pd.DataFrame) -> float:
    """A tuning run's score: the mean of its last two curve points (less noisy than the last one)."""
    return float(curve.sort_values("steps")["eval_utility"].tail(2).mean())


def tune(scenario: Scenario, budget: WorldBudget, out: Path, jobs: int = 2,
         log: Callable[[str], None] = print) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Every learner on its grid, on the tuning seed; ``(tuning table, chosen configuration per learner)``."""
    tasks, rows = [], []
    for learner in LEARNERS:
        for k, config in enumerate(tuning_grid(learner, budget.quick)):
            run_dir = out / "tune" / f"{learner}-config{k}"
            tasks.append((_with_hyperparameters(scenario, learner, config), learner, budget.tuning_seed,
                          budget.tuning_steps, run_dir))
            rows.append({"learner": learner, "config": k, "hyperparameters": json.dumps(config, sort_keys=True),
                         "run_dir": run_dir})
    _run_tasks(tasks, jobs, log)
    for row in rows:
        row["score"] = _curve_score(pd.read_csv(Path(row.pop("run_dir")) / "curve.csv"))
    table = pd.DataFrame(rows)
    chosen = {}
    for learner, group in table.groupby("learner", sort=False):
        best = group.loc[group["score"].idxmax()]
        chosen[learner] = json.loads(best["hyperparameters"])
    chosen[PENALISED] = chosen["d3pg"]
    return table, chosen


def _train_dir(out: Path, label: str, seed: int) -> Path:
    return out / "train" / f"{label}-seed{seed}"


def train_all(scenario: Scenario, budget: WorldBudget, chosen: dict[str, dict[str, Any]], out: Path, jobs: int = 2,
              log: Callable[[str], None] = print) -> pd.DataFrame:
    """Every trained agent (:data:`TRAINED`) on every training seed with its chosen configuration; the curves."""
    tasks = []
    for seed in budget.train_seeds:
        for label in TRAINED:
            algorithm = _algorithm(label)
            run_scenario = _with_hyperparameters(scenario, algorithm, chosen[label], penalised=label == PENALISED)
            tasks.append((run_scenario, algorithm, seed, budget.steps, _train_dir(out, label, seed)))
    _run_tasks(tasks, jobs, log)
    curves = []
    for label in TRAINED:
        for seed in budget.train_seeds:
            curve = pd.read_csv(_train_dir(out, label, seed) / "curve.csv").assign(agent=label)
            curves.append(curve[curve["steps"] <= budget.steps])
    return pd.concat(curves, ignore_index=True)


# ---------------------------------------------------------------------------
# baselines and trained policies in the world


def tuned_static_images(scenario: Scenario, budget: WorldBudget) -> tuple[int, pd.DataFrame]:
    """The uniform ``N`` (the ``static`` agent: equal power) with the best mean utility on the tuning seed's
    curve episodes, and the table."""
    rows = []
    for n in range(1, scenario.service.max_images_per_round + 1):
        frame = _level_one(scenario, "static", AgentConfig(name="static", params={"n_images": n}),
                           budget.eval_episodes, budget.tuning_seed)
        rows.append({"n_images": n, "utility": float(frame["utility"].mean())})
    table_ = pd.DataFrame(rows)
    return int(table_.loc[table_["utility"].idxmax(), "n_images"]), table_


def baseline_configs(scenario: Scenario, budget: WorldBudget, tuned_images: int = 4) -> dict[str, AgentConfig]:
    """The baselines as agent configurations.

    The lookahead oracle (with the budget's rollouts) builds on the best simple policy: its base policy is
    the tuned static ``N`` (``tuned_images``), so it improves on ``static_tuned`` by construction.
    """
    strategy = scenario.training.strategy
    return {
        "static": AgentConfig(name="static", params={"n_images": 4}),
        "static_tuned": AgentConfig(name="static", params={"n_images": int(tuned_images)}),
        "n_max": AgentConfig(name="static", params={"n_images": scenario.service.max_images_per_round}),
        "oracle": AgentConfig(name="oracle", params={"strategy": strategy}),
        "lookahead": AgentConfig(name="lookahead", params={"strategy": strategy, "rollouts": budget.lookahead_rollouts,
                                                           "base_images": int(tuned_images)}),
    }


def _level_one(scenario: Scenario, label: str, config: AgentConfig, episodes: int, seed: int) -> pd.DataFrame:
    """A baseline on the curve episodes (worker process)."""
    from sim.backends import agent_context, build_provisioning_agent
    from sim.rl.evaluation import agent_decider, evaluate_policy

    agent = build_provisioning_agent(config.name, config.params, agent_context(scenario), np.random.default_rng(seed))
    return evaluate_policy(agent_decider(agent), scenario, episodes, seed).assign(agent=label)


def curve_levels(scenario: Scenario, budget: WorldBudget, tuned_images: int, jobs: int = 2) -> pd.DataFrame:
    """Each baseline's utility on the curve episodes (one row per baseline and episode)."""
    configs = baseline_configs(scenario, budget, tuned_images)
    args = [(scenario, label, configs[label], budget.eval_episodes, budget.tuning_seed) for label in BASELINES]
    frames = run_tasks(_level_one, args, workers=jobs)
    return pd.concat(frames, ignore_index=True)


def _world_one(scenario: Scenario, label: str, config: AgentConfig, seed: int, train_seed: int) -> dict[str, Any]:
    """One world run of one agent (worker process): the run's summary."""
    import torch

    from sim.world.compare import Arm, run_arm_seed

    torch.set_num_threads(1)
    started = time.perf_counter()
    row = run_arm_seed(scenario, Arm(label, config, scenario.prompt_agent), seed)
    return {**row, "train_seed": train_seed, "wall_time_s": time.perf_counter() - started}


def compare_scenario(scenario: Scenario, budget: WorldBudget, out: Path, tuned_images: int) -> Scenario:
    """The study scenario with every baseline and trained policy as ``compare.provisioning_agents``.

    Saved as ``compare.yaml``: ``python -m sim compare OUT/compare.yaml --seeds N --first-seed S`` reruns the
    world runs of the table with the project's ``compare`` command (labels ``<agent>-run<seed>``).
    """
    from sim.config import CompareConfig, LabelledAgentConfig

    agents = [LabelledAgentConfig(label=label, name=c.name, params=c.params)
              for label, c in baseline_configs(scenario, budget, tuned_images).items()]
    for label in TRAINED:
        for seed in budget.train_seeds:
            checkpoint = str((_train_dir(out, label, seed) / "checkpoints" / "latest").resolve())
            agents.append(LabelledAgentConfig(label=f"{label}-run{seed}", name="learned",
                                              params={"checkpoint": checkpoint}))
    return scenario.model_copy(update={"compare": CompareConfig(provisioning_agents=agents)})


def world_runs(scenario: Scenario, budget: WorldBudget, out: Path, tuned_images: int, jobs: int = 2,
               log: Callable[[str], None] = print) -> pd.DataFrame:
    """Every baseline and every trained policy on every evaluation seed, in the world (``runs.csv`` rows)."""
    configs = baseline_configs(scenario, budget, tuned_images)
    tasks = [(label, configs[label], seed, -1) for label in BASELINES for seed in budget.eval_seeds]
    for label in TRAINED:
        for train_seed in budget.train_seeds:
            checkpoint = str(_train_dir(out, label, train_seed) / "checkpoints" / "latest")
            tasks += [(label, AgentConfig(name="learned", params={"checkpoint": checkpoint}), seed, train_seed)
                      for seed in budget.eval_seeds]
    # the lookahead oracle is by far the slowest: start it first
    tasks.sort(key=lambda t: t[0] != "lookahead")
    log(f"{len(tasks)} world runs ({len(budget.eval_seeds)} seeds) in {jobs} processes")
    rows = run_tasks(_world_one, [(scenario, *t) for t in tasks], workers=jobs)
    runs = pd.DataFrame(rows)
    order = {a: i for i, a in enumerate((*BASELINES, *TRAINED))}
    return runs.sort_values(["agent", "train_seed", "seed"], key=lambda c: c.map(order) if c.name == "agent" else c,
                            ignore_index=True)


# ---------------------------------------------------------------------------
# analysis

METRICS = ("mean_utility", "mean_qoe", "served_share", "mean_latency_s", "mean_images", "mean_rounds")


def per_world_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per agent and world seed; a trained agent's value is the mean over its training runs."""
    runs = runs.assign(served_share=runs["served_users"] / runs["users"].clip(lower=1))
    return runs.groupby(["agent", "seed"], sort=False)[list(METRICS)].mean().reset_index()


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per agent: each metric's mean over world seeds with its 95% CI, and the paired gap to the lookahead oracle."""
    per_seed = per_world_seed(runs)
    wide = per_seed.pivot(index="seed", columns="agent", values="mean_utility")
    rows = []
    for agent, group in per_seed.groupby("agent", sort=False):
        row: dict[str, Any] = {"agent": agent, "seeds": len(group)}
        for col in METRICS:
            m, lo, hi = mean_ci(group[col].to_numpy(float))
            row.update({col: m, f"{col}_low": lo, f"{col}_high": hi})
        if "lookahead" in wide:
            gap = 100.0 * (wide["lookahead"] - wide[agent]) / wide["lookahead"].abs()
            row["gap_pct"], row["gap_low"], row["gap_high"] = mean_ci(gap.to_numpy(float))
        rows.append(row)
    return pd.DataFrame(rows)


def training_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per trained agent: mean utility over training runs (each the mean over the world seeds), with its CI."""
    trained = runs[runs["train_seed"] >= 0]
    per_run = trained.groupby(["agent", "train_seed"], sort=False)["mean_utility"].mean().reset_index()
    rows = []
    for agent, group in per_run.groupby("agent", sort=False):
        m, lo, hi = mean_ci(group["mean_utility"].to_numpy(float))
        rows.append({"agent": agent, "runs": len(group), "mean_utility": m, "low": lo, "high": hi,
                     "worst_run": group["mean_utility"].min(), "best_run": group["mean_utility"].max()})
    return pd.DataFrame(rows)


#: The claims tested, ``(a, b, claim, the paper's relative gain in % or None)``: is ``a`` above ``b``?
CLAIMS = (
    ("lookahead", "static", "the lookahead oracle beats static (the ceiling is a ceiling)", None),
    ("lookahead", "static_tuned", "the lookahead oracle beats the best static N", None),
    ("lookahead", "n_max", "the lookahead oracle beats N = max, equal power", None),
    ("lookahead", "oracle", "the lookahead oracle beats the one-round oracle", None),
    ("d3pg", "sac", "D3PG above SAC", 67.8),
    ("d3pg", "ppo", "D3PG above PPO", 7.0),
    ("d3pg", "ddpg", "the diffusion actor beats an MLP actor with the same critics", None),
    ("d3pg", "static", "D3PG above static", None),
    ("d3pg", "static_tuned", "D3PG above the best static N", None),
    ("d3pg", PENALISED, "the feasible action mapping beats the paper's penalised raw action", None),
    ("ddpg", "static", "DDPG above static", None),
    ("ppo", "static", "PPO above static", None),
    ("sac", "static", "SAC above static", None),
)


def claims_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Paired differences over world seeds for :data:`CLAIMS`, with wins, p-values and Holm's correction."""
    wide = per_world_seed(runs).pivot(index="seed", columns="agent", values="mean_utility")
    rows = []
    for a, b, claim, paper_pct in CLAIMS:
        if a not in wide or b not in wide:
            continue
        x, y = wide[a].to_numpy(float), wide[b].to_numpy(float)
        m, lo, hi = paired_difference(x, y)
        base = float(np.abs(np.nanmean(y)))
        rows.append({"a": a, "b": b, "claim": claim, "diff": m, "low": lo, "high": hi,
                     "pct": 100.0 * m / base, "pct_low": 100.0 * lo / base, "pct_high": 100.0 * hi / base,
                     "wins": int(np.sum(x > y)), "seeds": int(np.sum(np.isfinite(x - y))),
                     "p": paired_t_test(x, y), "paper_pct": paper_pct})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["p_holm"] = holm_adjust(frame["p"].to_numpy())
    return frame


def time_to_lookahead(curves: pd.DataFrame, levels: pd.DataFrame, tolerance: float = LOOKAHEAD_TOLERANCE) -> pd.DataFrame:
    """Per trained agent and run: the first curve point within ``tolerance`` of the lookahead oracle (NaN: never)."""
    level = float(levels[levels["agent"] == "lookahead"]["utility"].mean())
    rows = []
    for (agent, seed), group in curves.groupby(["agent", "seed"], sort=False):
        hit = group[group["eval_utility"] >= level - tolerance * abs(level)].sort_values("steps")
        first = hit.iloc[0] if len(hit) else None
        rows.append({"agent": agent, "seed": seed, "lookahead_level": level,
                     "steps": float(first["steps"]) if first is not None else np.nan,
                     "wall_time_s": float(first["wall_time_s"]) if first is not None else np.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# figures


def plot_curves(curves: pd.DataFrame, levels: pd.DataFrame, path: Path) -> None:
    """Training curves on the curve episodes (mean and 95% CI over runs) with the baselines' levels."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for agent, group in curves.groupby("agent", sort=False):
        plot_mean_ci(ax, group, "steps", "eval_utility", COLORS[agent], LABELS[agent])
    for label in BASELINES:
        values = levels[levels["agent"] == label]["utility"]
        if len(values):
            ax.axhline(values.mean(), color=COLORS[label], linestyle="--", linewidth=1.2, label=LABELS[label])
    ax.set_xlabel("environment steps (decisions in the world)")
    ax.set_ylabel("mean utility per user (episode return)")
    ax.set_title(f"Learning in the world: mean and 95% CI over {curves['seed'].nunique()} training runs")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_table(summary: pd.DataFrame, path: Path) -> None:
    """Mean utility per user in the world with 95% CIs over evaluation seeds, one row per agent."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(summary) + 1.2))
    y = np.arange(len(summary))[::-1]
    for yi, r in zip(y, summary.itertuples(index=False)):
        lo, hi = r.mean_utility_low, r.mean_utility_high
        ax.errorbar(r.mean_utility, yi, xerr=[[r.mean_utility - lo], [hi - r.mean_utility]] if np.isfinite(lo) else None,
                    fmt="o", color=COLORS.get(r.agent, "k"), capsize=3)
    ax.set_yticks(y, [LABELS.get(a, a) for a in summary["agent"]], fontsize=8)
    ax.set_xlabel("mean utility per user over its whole stay (95% CI over evaluation seeds)")
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, path)


# ---------------------------------------------------------------------------
# the whole study


def reproduce(out: Path, quick: bool = False, jobs: int | None = None, scenario_path: Path = DEFAULT_SCENARIO,
              budget: WorldBudget | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the sequential comparison into ``out`` (finished training runs are kept); returns its tables."""
    import stable_baselines3  # noqa: F401  (the learn extra: fail here, not in a worker after minutes of work)
    import torch  # noqa: F401

    budget = budget or (QUICK if quick else FULL)
    jobs = jobs or min(2, os.cpu_count() or 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = study_scenario(load_scenario(scenario_path), budget)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    tuning, chosen = tune(scenario, budget, out, jobs, log)
    tuned_images, statics = tuned_static_images(scenario, budget)
    statics.to_csv(out / "tuning_static.csv", index=False)
    chosen["static_tuned"] = {"n_images": tuned_images}
    tuning.to_csv(out / "tuning.csv", index=False)
    (out / "chosen.json").write_text(json.dumps(chosen, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    timings["tuning_s"] = time.perf_counter() - t

    t = time.perf_counter()
    curves = train_all(scenario, budget, chosen, out, jobs, log)
    curves.to_csv(out / "curves.csv", index=False)
    timings["training_s"] = time.perf_counter() - t

    t = time.perf_counter()
    log("baselines on the curve episodes")
    levels = curve_levels(scenario, budget, tuned_images, jobs)
    levels.to_csv(out / "levels.csv", index=False)
    reach = time_to_lookahead(curves, levels)
    reach.to_csv(out / "time_to_lookahead.csv", index=False)
    timings["levels_s"] = time.perf_counter() - t

    t = time.perf_counter()
    (out / "compare.yaml").write_text(scenario_to_yaml(compare_scenario(scenario, budget, out, tuned_images)),
                                      encoding="utf-8")
    runs = world_runs(scenario, budget, out, tuned_images, jobs, log)
    runs.to_csv(out / "runs.csv", index=False)
    summary = table(runs)
    summary.to_csv(out / "table.csv", index=False)
    training_runs(runs).to_csv(out / "training_runs.csv", index=False)
    claims = claims_table(runs)
    claims.to_csv(out / "claims.csv", index=False)
    timings["world_s"] = time.perf_counter() - t

    plot_curves(curves, levels, out / "world_training_curves.png")
    plot_table(summary, out / "world_compare.png")
    meta = {"budget": asdict(budget), "quick": quick, "jobs": jobs, "scenario": str(scenario_path),
            "timings_s": timings, "total_s": sum(timings.values())}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {"summary": summary, "claims": claims, "curves": curves, "levels": levels, "reach": reach, "meta": meta}


# ---------------------------------------------------------------------------
# the report's part


def claims(out: Path) -> list[dict[str, str]]:
    """Rows of the paper report's claims table for the sequential setting (empty when it has not run)."""
    path = Path(out) / "claims.csv"
    if not path.exists():
        return []
    rows = []
    for r in pd.read_csv(path).itertuples(index=False):
        if r.a != "d3pg" or r.b not in ("sac", "ppo", "ddpg", "static"):
            continue
        judged = verdict(r.low, r.high) + f" (Holm p = {r.p_holm:.3g})"
        paper = "implied, not measured" if r.b == "ddpg" else "yes (Fig. 14)"
        if np.isfinite(r.paper_pct):
            paper = f"+{r.paper_pct:g}% QoE"
            lo, hi = sorted((r.pct_low, r.pct_high))
            judged += f"; {magnitude_verdict(lo, hi, r.paper_pct, '%')} ({lo:+.1f}% to {hi:+.1f}%)"
        rows.append({"claim": f"sequential world: {r.claim}", "paper": paper,
                     "ours": f"{r.diff:+.3f} [{r.low:+.3f}, {r.high:+.3f}] utility/user ({r.pct:+.1f}% of "
                             f"{LABELS[r.b]}'s magnitude; wins {r.wins}/{r.seeds} seeds)",
                     "verdict": judged})
    return rows


def section(out: Path, rel: str = "provisioning_world") -> str:
    """The report's markdown section for the sequential setting (empty when it has not run)."""
    out = Path(out)
    if not (out / "table.csv").exists():
        return ""
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    budget = meta["budget"]
    summary = pd.read_csv(out / "table.csv")
    claims_frame = pd.read_csv(out / "claims.csv")
    spread = pd.read_csv(out / "training_runs.csv")
    reach = pd.read_csv(out / "time_to_lookahead.csv")
    tuning = pd.read_csv(out / "tuning.csv")
    chosen = json.loads((out / "chosen.json").read_text(encoding="utf-8"))
    lines = [
        "## Provisioning in the sequential world",
        "",
        f"`{Path(meta['scenario']).name}`: the paper's MASP, channel and costs with Poisson arrivals and service "
        "rounds; gated QoE. Learners trained on `sim/World-v0` (one episode is one world run) with the configuration "
        f"chosen on tuning seed {budget['tuning_seed']} ({budget['tuning_steps']:,} steps per configuration), then "
        f"{len(budget['train_seeds'])} training runs of {budget['steps']:,} steps each; every policy and baseline "
        f"compared in the world on {len(budget['eval_seeds'])} evaluation seeds "
        f"({budget['eval_seeds'][0]}-{budget['eval_seeds'][-1]}, never met in tuning or training). "
        + wall_time_sentence(meta),
        "",
        f"![training curves]({rel}/world_training_curves.png)",
        "",
        "Mean utility per user over its whole stay (the world's objective), mean and 95% CI over evaluation seeds "
        "(a learner's value per seed is the mean over its training runs); gap to the lookahead oracle paired by seed. "
        f"From this report's directory, `python -m sim compare {rel}/compare.yaml --seeds {len(budget['eval_seeds'])} "
        f"--first-seed {budget['eval_seeds'][0]}` reruns these world runs with the project's compare command:",
        "",
        "| agent | utility per user | users served | latency s | images per user | gap to lookahead |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples(index=False):
        lines.append(f"| {LABELS.get(r.agent, r.agent)} | {fmt_ci(r.mean_utility, r.mean_utility_low, r.mean_utility_high)} | "
                     f"{fmt_ci(r.served_share, r.served_share_low, r.served_share_high, 2)} | {r.mean_latency_s:.0f} | "
                     f"{r.mean_images:.1f} | {fmt_ci(r.gap_pct, r.gap_low, r.gap_high, 1)}% |")
    lines += ["", f"![world comparison]({rel}/world_compare.png)", "",
              "Paired differences over the evaluation seeds (95% CI), wins per seed, and the paired t-test's p-value "
              "with Holm's correction across these claims:", "",
              "| claim | difference (utility per user) | relative to the second | wins | p (Holm) | verdict |",
              "|---|---|---|---|---|---|"]
    for r in claims_frame.itertuples(index=False):
        judged = verdict(r.low, r.high)
        if np.isfinite(r.paper_pct):
            lo, hi = sorted((r.pct_low, r.pct_high))
            judged += f"; {magnitude_verdict(lo, hi, r.paper_pct, '%')}"
        lines.append(f"| {r.claim} ({LABELS[r.a]} - {LABELS[r.b]}) | {fmt_ci(r.diff, r.low, r.high)} | "
                     f"{r.pct:+.1f}% [{r.pct_low:+.1f}, {r.pct_high:+.1f}] | {r.wins}/{r.seeds} | {r.p_holm:.3g} | {judged} |")
    frame = claims_frame.set_index(["a", "b"])
    if ("lookahead", "static_tuned") in frame.index:
        r = frame.loc[("lookahead", "static_tuned")]
        ceiling = "is" if r["low"] > 0 else "is not"
        lines += ["", f"The lookahead oracle {ceiling} a ceiling here: against the best static policy it scores "
                  f"{fmt_ci(r['diff'], r['low'], r['high'])} utility per user. Its rollouts score the users in service "
                  "and leave out what a long epoch costs the users waiting behind them (their later start); where "
                  "queueing delay matters that much, it favours too many images (docs/model.md, Oracles)."]
    lines += ["", "Spread over training runs (each run's mean over the evaluation seeds):", "",
              "| agent | runs | utility per user | worst run | best run |", "|---|---|---|---|---|"]
    for r in spread.itertuples(index=False):
        lines.append(f"| {LABELS.get(r.agent, r.agent)} | {r.runs} | {fmt_ci(r.mean_utility, r.low, r.high)} | "
                     f"{r.worst_run:.3f} | {r.best_run:.3f} |")
    level = reach["lookahead_level"].iloc[0] if len(reach) else float("nan")
    lines += ["", f"Time to come within {LOOKAHEAD_TOLERANCE:.0%} of the lookahead oracle on the curve episodes "
              f"(its level there: {level:.3f}; training wall time with {meta['jobs']} runs sharing the machine):", "",
              "| agent | runs that get there | steps (median) | wall time (median) |", "|---|---|---|---|"]
    for agent, group in reach.groupby("agent", sort=False):
        got = group.dropna(subset=["steps"])
        steps = f"{got['steps'].median():,.0f}" if len(got) else "never"
        wall = f"{got['wall_time_s'].median():.0f} s" if len(got) else "-"
        lines.append(f"| {LABELS.get(agent, agent)} | {len(got)}/{len(group)} | {steps} | {wall} |")
    lines += ["", "Tuning (score: mean of the last two curve points on the tuning seed's curve episodes; chosen in bold):",
              "", "| learner | configuration | score |", "|---|---|---|"]
    for r in tuning.itertuples(index=False):
        config = json.loads(r.hyperparameters)
        bold = "**" if config == chosen.get(r.learner) else ""
        lines.append(f"| {LABELS[r.learner]} | {bold}{', '.join(f'{k} {v:g}' for k, v in sorted(config.items()))}{bold} | "
                     f"{r.score:.3f} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "BASELINES", "CLAIMS", "FULL", "LEARNERS", "PENALISED", "QUICK", "TRAINED", "WorldBudget", "baseline_configs",
    "claims", "claims_table", "compare_scenario", "curve_levels", "per_world_seed", "plot_curves", "plot_table", "reproduce", "section",
    "tuned_static_images",
    "study_scenario", "table", "time_to_lookahead", "train_all", "training_runs", "tune", "tuning_grid", "world_runs",
]
