"""Reproduction of the D3PG paper's Figs. 14 and 15: provisioning agents on ``sim/Provisioning-v0``.

:func:`reproduce` does, for the scenario ``scenarios/paper/provisioning.yaml``:

1. **Training** (:func:`train_all`): D3PG, PPO, SAC and the MLP-actor DDPG
   ablation, each on every seed, through :func:`sim.rl.training.train` (the same code
   as ``python -m sim train``), in ``jobs`` parallel processes of one torch
   thread each. Runs already finished in ``out/train`` are kept; interrupted ones
   resume from their latest checkpoint.
2. **Levels** (:func:`baseline_levels`): static (4 images, equal power), random
   and the oracle on each seed's evaluation episodes, the same episodes the
   learners' curves are evaluated on (:func:`sim.rl.evaluation.evaluate_policy`).
3. **Fig. 14** (``fig14_training_curves.png``, ``curves.csv``): each learner's
   evaluation utility per decision against environment steps, mean and 95% CI
   over seeds, with the levels of static, random and the oracle drawn.
4. **Converged utility** (``final.csv``): every agent's utility, QoE, share of
   users satisfied and images per user at the end of training, per seed, and
   the mean with its 95% CI and gap to the oracle (``summary.csv``).
5. **Fig. 15** (``fig15_three_users.png``, ``three_users.csv``): the paper's
   three users ("A dog with a colorful collar" 7.6, "A garden with a fountain"
   8.2, "A city with blue car" 8.5) at 60 / 100 / 140 m: each agent's ``N_i``,
   power split and expected QoE, averaged over ``example_draws`` channel,
   generation and prompt-effect draws with :meth:`ProvisioningEnv.simulate`.

Everything lands in ``out`` (default ``results/paper/provisioning``); the
claims table that puts the paper's numbers beside ours is built from
``summary.csv`` by :mod:`sim.paper.report`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from sim.backends import agent_context, build_provisioning_agent
from sim.decisions import Provision, ProvisioningObservation
from sim.config import Scenario, load_scenario
from sim.executors import run_tasks
from sim.paper.common import fmt_ci, magnitude_verdict, plot_mean_ci, pyplot, verdict, wall_time_sentence, save_figure
from sim.stats import mean_ci

LEARNERS = ("d3pg", "ppo", "sac", "ddpg")
BASELINES = ("static", "random", "oracle")
#: Display names and colours shared by every figure.
LABELS = {"d3pg": "D3PG", "ppo": "PPO", "sac": "SAC", "ddpg": "DDPG (MLP actor)",
          "static": "static (N=4, equal P)", "random": "random", "oracle": "oracle"}
COLORS = {"d3pg": "tab:red", "ppo": "tab:blue", "sac": "tab:green", "ddpg": "tab:purple",
          "static": "tab:gray", "random": "tab:brown", "oracle": "black"}
DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "paper" / "provisioning.yaml"


@dataclass(frozen=True)
class ProvisioningBudget:
    """How much of the reproduction to run (``FULL`` for the figures, ``QUICK`` for a smoke check)."""

    #: Environment steps per learner and seed.
    steps: int
    #: Root seeds (one training run per learner and seed).
    seeds: tuple[int, ...]
    #: Environment steps between evaluation points of the curves.
    eval_every: int
    #: Evaluation episodes per point (each ``training.episode_length`` decisions).
    eval_episodes: int
    #: Monte Carlo draws per agent for the three-user example.
    example_draws: int


FULL = ProvisioningBudget(steps=10_000, seeds=(0, 1, 2, 3, 4), eval_every=1_000, eval_episodes=8, example_draws=2_000)
QUICK = ProvisioningBudget(steps=1_000, seeds=(0, 1), eval_every=500, eval_episodes=2, example_draws=200)


def budget_scenario(scenario: Scenario, budget: ProvisioningBudget) -> Scenario:
    """The scenario with its training section's evaluation settings taken from ``budget``."""
    training = scenario.training.model_copy(
        update={"eval_every_steps": budget.eval_every, "eval_episodes": budget.eval_episodes,
                "checkpoint_every_steps": max(budget.steps, 1)}
    )
    return scenario.model_copy(update={"training": training})


# ---------------------------------------------------------------------------
# training


def _run_dir(out: Path, algorithm: str, seed: int) -> Path:
    return out / "train" / f"{algorithm}-seed{seed}"


def _steps_done(run_dir: Path) -> int:
    meta = run_dir / "checkpoints" / "latest" / "checkpoint.json"
    return int(json.loads(meta.read_text(encoding="utf-8"))["steps"]) if meta.exists() else 0


def _train_one(scenario: Scenario, algorithm: str, seed: int, steps: int, run_dir: Path) -> tuple[str, int, float]:
    """One training run in a worker process (one torch thread: the runs share the cores)."""
    import torch

    from sim.rl.training import train

    torch.set_num_threads(1)
    done = _steps_done(run_dir)
    if done >= steps:
        return algorithm, seed, 0.0
    result = train(scenario, algorithm, steps, seed, run_dir, resume=done > 0, quiet=True)
    return algorithm, seed, result.wall_time_s


def train_all(scenario: Scenario, budget: ProvisioningBudget, out: Path, jobs: int = 2,
              learners: Sequence[str] = LEARNERS, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Train every learner on every seed (skipping finished runs); the concatenated curves."""
    tasks = [(a, s) for s in budget.seeds for a in learners if _steps_done(_run_dir(out, a, s)) < budget.steps]
    if tasks:
        log(f"training {len(tasks)} runs ({budget.steps} steps each) in {jobs} processes")
        done = run_tasks(_train_one, [(scenario, a, s, budget.steps, _run_dir(out, a, s)) for a, s in tasks],
                         workers=jobs)
        for a, s, wall in done:
            log(f"  {a} seed {s}: {wall:.0f} s")
    curves = []
    for a in learners:
        for s in budget.seeds:
            curve = pd.read_csv(_run_dir(out, a, s) / "curve.csv")
            curves.append(curve[curve["steps"] <= budget.steps])
    return pd.concat(curves, ignore_index=True)


# ---------------------------------------------------------------------------
# evaluation of every agent on the same episodes


def _baseline_agent(name: str, scenario: Scenario, seed: int):
    context = agent_context(scenario)
    params: dict[str, Any] = {"n_images": 4} if name == "static" else {}
    if name == "oracle":
        params = {"strategy": scenario.training.strategy}
    return build_provisioning_agent(name, params, context, np.random.default_rng(seed))


def _evaluate_one(scenario: Scenario, agent: str, seed: int, episodes: int, checkpoint: str | None) -> pd.DataFrame:
    """Final evaluation of one agent on one seed's evaluation episodes (worker process)."""
    import torch

    from sim.rl.checkpoints import load_model
    from sim.rl.evaluation import agent_decider, evaluate_policy, model_decider

    torch.set_num_threads(1)
    if checkpoint is None:
        decide = agent_decider(_baseline_agent(agent, scenario, seed))
    else:
        decide = model_decider(load_model(agent, Path(checkpoint)), scenario)
    started = time.perf_counter()
    frame = evaluate_policy(decide, scenario, episodes, seed)
    frame.insert(0, "seed", seed)
    frame.insert(0, "agent", agent)
    frame["wall_time_s"] = time.perf_counter() - started
    return frame


def final_evaluation(scenario: Scenario, budget: ProvisioningBudget, out: Path, jobs: int = 2,
                     learners: Sequence[str] = LEARNERS, baselines: Sequence[str] = BASELINES) -> pd.DataFrame:
    """Every agent's per-episode metrics at the end of training, per seed (``final.csv``)."""
    tasks = [(b, s, None) for s in budget.seeds for b in baselines]
    tasks += [(a, s, str(_run_dir(out, a, s) / "checkpoints" / "latest")) for s in budget.seeds for a in learners]
    # The oracle is by far the slowest (one optimisation per decision): start it first.
    tasks.sort(key=lambda t: t[0] != "oracle")
    frames = run_tasks(_evaluate_one, [(scenario, a, s, budget.eval_episodes, c) for a, s, c in tasks], workers=jobs)
    return pd.concat(frames, ignore_index=True)


def summarise(final: pd.DataFrame) -> pd.DataFrame:
    """Per agent: mean over seeds of each seed's mean, with the 95% CI over seeds, and the gap to the oracle."""
    per_seed = final.groupby(["agent", "seed"], sort=False)[["utility", "qoe", "satisfied", "n_images"]].mean()
    rows = []
    for agent, group in per_seed.groupby(level="agent", sort=False):
        row: dict[str, Any] = {"agent": agent, "seeds": len(group)}
        for col in ("utility", "qoe", "satisfied", "n_images"):
            m, lo, hi = mean_ci(group[col].to_numpy())
            row.update({col: m, f"{col}_low": lo, f"{col}_high": hi})
        rows.append(row)
    summary = pd.DataFrame(rows)
    if "oracle" in set(summary["agent"]):
        oracle = per_seed.xs("oracle", level="agent")["utility"]
        gaps = []
        for agent in summary["agent"]:
            diff = (oracle - per_seed.xs(agent, level="agent")["utility"]).dropna() / oracle.abs()
            gaps.append(mean_ci(100.0 * diff.to_numpy()))
        summary["gap_to_oracle_pct"] = [g[0] for g in gaps]
        summary["gap_low"] = [g[1] for g in gaps]
        summary["gap_high"] = [g[2] for g in gaps]
    return summary


def oracle_wins(final: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the oracle's utility minus static's and random's (both must be > 0 on every seed)."""
    per_seed = final.groupby(["seed", "agent"])["utility"].mean().unstack("agent")
    return pd.DataFrame({"seed": per_seed.index, "oracle_minus_static": per_seed["oracle"] - per_seed["static"],
                         "oracle_minus_random": per_seed["oracle"] - per_seed["random"]}).reset_index(drop=True)


def time_to_oracle(curves: pd.DataFrame, final: pd.DataFrame, tolerance: float = 0.02) -> pd.DataFrame:
    """Per learner and seed: the first evaluation point within ``tolerance`` of that seed's oracle level.

    Steps and training wall time (``NaN`` when the curve never gets there). The oracle's level is its
    utility on the same evaluation episodes; a point counts when ``U >= U_oracle - tolerance |U_oracle|``.
    """
    oracle = final[final["agent"] == "oracle"].groupby("seed")["utility"].mean()
    rows = []
    for (algorithm, seed), group in curves.groupby(["algorithm", "seed"], sort=False):
        level = oracle.get(seed, np.nan)
        hit = group[group["eval_utility"] >= level - tolerance * abs(level)].sort_values("steps")
        first = hit.iloc[0] if len(hit) else None
        rows.append({"algorithm": algorithm, "seed": seed,
                     "steps": float(first["steps"]) if first is not None else np.nan,
                     "wall_time_s": float(first["wall_time_s"]) if first is not None else np.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# the paper's three-user example (Fig. 15)


def three_user_observation(scenario: Scenario, env) -> ProvisioningObservation:
    """The paper's three users (the scenario's fixed prompts, thresholds, distances) as one decision epoch."""
    from sim.model.quality import prompt_complexity

    users = scenario.users
    q = len(users.prompts)
    if not (q == len(users.thresholds) == len(users.distances_m) == env.n_users):
        raise ValueError(f"the example needs {env.n_users} fixed prompts, thresholds and distances in users:")
    distances = np.asarray(users.distances_m, dtype=float)
    return ProvisioningObservation(
        time_s=0.0, masp=scenario.masps[0].name, p_total_w=env.p_total_w, max_images=env.n_max,
        user_ids=np.arange(q), prompts=tuple(users.prompts),
        complexities=np.array([prompt_complexity(p) for p in users.prompts]),
        distances_m=distances, thresholds=np.asarray(users.thresholds, dtype=float),
        mean_snr_db_at_1w=np.asarray(env.channel.mean_snr_db(1.0, distances), dtype=float),
        rounds_done=np.zeros(q, dtype=int), best_scores=np.zeros(q),
    )


def expected_outcome(env, obs: ProvisioningObservation, provision: Provision, draws: int, seed: int = 0) -> dict[str, Any]:
    """Monte Carlo means of ``provision`` for the users of ``obs``: per-user QoE and P(satisfied), total utility."""
    env.reset(seed=seed)
    utilities, qoe, satisfied = [], [], []
    for k in range(draws):
        breakdown, users = env.simulate(obs, provision, epoch=k, key=k)
        utilities.append(breakdown.total)
        qoe.append(users["qoe"])
        satisfied.append(users["satisfied"])
    m, lo, hi = mean_ci(np.array(utilities))
    return {"utility": m, "utility_low": lo, "utility_high": hi,
            "qoe": np.mean(qoe, axis=0), "p_satisfied": np.mean(satisfied, axis=0)}


def three_user_example(scenario: Scenario, budget: ProvisioningBudget, out: Path,
                       learners: Sequence[str] = LEARNERS, baselines: Sequence[str] = BASELINES) -> pd.DataFrame:
    """Each agent's decision for the paper's three users and its expected outcome (one row per agent, seed, user)."""
    from sim.rl.checkpoints import load_model
    from sim.rl.evaluation import model_decider
    from sim.rl.features import observation_vector
    from sim.rl.provisioning_env import make_env

    env = make_env(scenario)
    env.reset(seed=0)
    obs = three_user_observation(scenario, env)
    rows = []
    deciders: list[tuple[str, int, Callable]] = []
    for b in baselines:
        agent = _baseline_agent(b, scenario, 0)
        deciders.append((b, 0, lambda e, v, agent=agent: agent.decide(obs)))
    for a in learners:
        for s in budget.seeds:
            model = load_model(a, _run_dir(out, a, s) / "checkpoints" / "latest")
            deciders.append((a, s, model_decider(model, scenario)))
    vector = observation_vector(obs, scenario)
    for name, seed, decide in deciders:
        provision = decide(env, vector)
        outcome = expected_outcome(env, obs, provision, budget.example_draws)
        for i, prompt in enumerate(obs.prompts):
            rows.append({"agent": name, "seed": seed, "user": i, "prompt": prompt, "threshold": obs.thresholds[i],
                         "distance_m": obs.distances_m[i], "n_images": int(provision.n_images[i]),
                         "power_w": float(provision.power_w[i]), "qoe": float(outcome["qoe"][i]),
                         "p_satisfied": float(outcome["p_satisfied"][i]), "utility": outcome["utility"],
                         "utility_low": outcome["utility_low"], "utility_high": outcome["utility_high"]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# figures


def plot_fig14(curves: pd.DataFrame, final: pd.DataFrame, path: Path) -> None:
    """Training curves (mean and 95% CI over seeds) with the baselines' levels."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for algorithm, group in curves.groupby("algorithm", sort=False):
        plot_mean_ci(ax, group, "steps", "eval_utility", COLORS[algorithm], LABELS[algorithm])
    per_seed = final.groupby(["agent", "seed"])["utility"].mean()
    for baseline in BASELINES:
        if baseline in per_seed.index.get_level_values("agent"):
            m, lo, hi = mean_ci(per_seed.xs(baseline, level="agent").to_numpy())
            ax.axhline(m, color=COLORS[baseline], linestyle="--", linewidth=1.2, label=LABELS[baseline])
            if np.isfinite(lo):
                ax.axhspan(lo, hi, color=COLORS[baseline], alpha=0.08)
    ax.set_xlabel("environment steps (decision epochs)")
    ax.set_ylabel("evaluation utility per decision (eq. 22a)")
    ax.set_title(f"Fig. 14: provisioning agents, mean and 95% CI over {curves['seed'].nunique()} seeds")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_fig15(example: pd.DataFrame, path: Path) -> None:
    """Per agent: images and power share per user, and the expected QoE, for the paper's three users."""
    plt = pyplot()
    agents = list(dict.fromkeys(example["agent"]))
    means = example.groupby(["agent", "user"], sort=False)[["n_images", "power_w", "qoe"]].mean()
    users = sorted(example["user"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    width = 0.8 / len(users)
    for k, (col, label) in enumerate([("n_images", "images N_i (mean over seeds)"),
                                      ("power_w", "transmit power P_i (W)"), ("qoe", "expected QoE_i")]):
        ax = axes[k]
        for j, u in enumerate(users):
            values = [means.loc[(a, u), col] for a in agents]
            prompt = example.loc[example["user"] == u, "prompt"].iloc[0]
            ax.bar(np.arange(len(agents)) + (j - (len(users) - 1) / 2) * width, values, width,
                   label=f"user {u}: {prompt}")
        ax.set_xticks(np.arange(len(agents)), [LABELS[a].split(" (")[0] for a in agents], rotation=30, fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(users), fontsize=8)
    fig.suptitle("Fig. 15: the paper's three users (thresholds 7.6, 8.2, 8.5)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------
# the whole reproduction


def reproduce(out: Path, quick: bool = False, jobs: int | None = None, scenario_path: Path = DEFAULT_SCENARIO,
              budget: ProvisioningBudget | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole provisioning reproduction into ``out``; returns the timings and the summary frame.

    ``budget`` defaults to :data:`QUICK` with ``quick`` and :data:`FULL` otherwise.
    """
    import stable_baselines3  # noqa: F401  (the learn extra: fail here, not in a worker after minutes of work)
    import torch  # noqa: F401

    budget = budget or (QUICK if quick else FULL)
    jobs = jobs or min(2, os.cpu_count() or 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = budget_scenario(load_scenario(scenario_path), budget)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    curves = train_all(scenario, budget, out, jobs, log=log)
    curves.to_csv(out / "curves.csv", index=False)
    timings["training_s"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"evaluating {len(LEARNERS) + len(BASELINES)} agents on {len(budget.seeds)} seeds x {budget.eval_episodes} episodes")
    final = final_evaluation(scenario, budget, out, jobs)
    final.to_csv(out / "final.csv", index=False)
    summary = summarise(final)
    summary.to_csv(out / "summary.csv", index=False)
    wins = oracle_wins(final)
    wins.to_csv(out / "oracle_wins.csv", index=False)
    time_to_oracle(curves, final).to_csv(out / "time_to_oracle.csv", index=False)
    timings["evaluation_s"] = time.perf_counter() - t

    t = time.perf_counter()
    log("three-user example")
    example = three_user_example(scenario, budget, out)
    example.to_csv(out / "three_users.csv", index=False)
    timings["example_s"] = time.perf_counter() - t

    plot_fig14(curves, final, out / "fig14_training_curves.png")
    plot_fig15(example, out / "fig15_three_users.png")
    meta = {"budget": asdict(budget), "quick": quick, "jobs": jobs, "scenario": str(scenario_path),
            "timings_s": timings, "total_s": sum(timings.values())}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {"summary": summary, "wins": wins, "example": example, "curves": curves, "meta": meta}


__all__ = [
    "BASELINES", "FULL", "LEARNERS", "QUICK", "ProvisioningBudget", "budget_scenario", "claims", "discussion",
    "expected_outcome",
    "final_evaluation", "oracle_wins", "paired_difference", "plot_fig14", "plot_fig15", "reproduce", "section",
    "summarise", "three_user_example", "three_user_observation", "time_to_oracle", "train_all",
]


# ---------------------------------------------------------------------------
# the report's part


def paired_difference(final: pd.DataFrame, a: str, b: str) -> tuple[float, float, float, float]:
    """Mean utility difference ``a - b`` over seeds (paired: same evaluation episodes), its CI, and ``%`` of ``|b|``."""
    per_seed = final.groupby(["seed", "agent"])["utility"].mean().unstack("agent")
    diff = (per_seed[a] - per_seed[b]).dropna().to_numpy()
    m, lo, hi = mean_ci(diff)
    return m, lo, hi, 100.0 * m / abs(per_seed[b].mean())


def claims(out: Path) -> list[dict[str, str]]:
    """Rows of the claims table from ``final.csv`` (empty when the part has not run)."""
    path = Path(out) / "final.csv"
    if not path.exists():
        return []
    final = pd.read_csv(path)
    present = set(final["agent"])
    rows = []
    comparisons = (
        ("sac", "D3PG's QoE/utility above SAC's (Fig. 14)", "+67.8% QoE", 67.8),
        ("ppo", "D3PG's QoE/utility above PPO's (Fig. 14)", "+7.0% QoE", 7.0),
        ("static", "D3PG above the static baseline (4 images, equal power)", "yes (Fig. 14)", None),
        ("ddpg", "the diffusion actor beats an MLP actor with the same critics", "implied, not measured", None),
    )
    for other, claim, paper, paper_pct in comparisons:
        if not {"d3pg", other} <= present:
            continue
        m, lo, hi, pct = paired_difference(final, "d3pg", other)
        scale = pct / m if m else float("nan")  # percent of the baseline's magnitude per unit of utility
        pct_lo, pct_hi = sorted((lo * scale, hi * scale))
        judged = verdict(lo, hi)
        if paper_pct is not None:  # the magnitude too: is the paper's percentage inside ours?
            judged += f"; {magnitude_verdict(pct_lo, pct_hi, paper_pct, '%')} ({pct_lo:+.1f}% to {pct_hi:+.1f}%)"
        rows.append({"claim": claim, "paper": paper,
                     "ours": f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] utility/decision ({pct:+.1f}% of {LABELS[other]}'s magnitude)",
                     "verdict": judged})
    return rows


def section(out: Path, rel: str = "provisioning") -> str:
    """The report's markdown section for Figs. 14-15 (empty when the part has not run)."""
    out = Path(out)
    if not (out / "summary.csv").exists():
        return ""
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    summary = pd.read_csv(out / "summary.csv")
    wins = pd.read_csv(out / "oracle_wins.csv")
    example = pd.read_csv(out / "three_users.csv")
    budget = meta["budget"]
    lines = [
        "## Provisioning: Figs. 14 and 15",
        "",
        f"{len(budget['seeds'])} seeds, {budget['steps']:,} environment steps per learner and seed, evaluation on "
        f"{budget['eval_episodes']} held-out episodes of 32 decisions per seed (the same episodes for every agent). "
        + wall_time_sentence(meta),
        "",
        f"![Fig. 14]({rel}/fig14_training_curves.png)",
        "",
        "Converged utility per decision (eq. 22a, 3 users), mean and 95% CI over seeds:",
        "",
        "| agent | utility | QoE per user | users satisfied | images per user | gap to oracle |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples(index=False):
        gap = fmt_ci(r.gap_to_oracle_pct, r.gap_low, r.gap_high, 1) + "%" if "gap_to_oracle_pct" in summary else "n/a"
        lines.append(f"| {LABELS.get(r.agent, r.agent)} | {fmt_ci(r.utility, r.utility_low, r.utility_high)} | "
                     f"{fmt_ci(r.qoe, r.qoe_low, r.qoe_high)} | {fmt_ci(r.satisfied, r.satisfied_low, r.satisfied_high, 2)} | "
                     f"{r.n_images:.2f} | {gap} |")
    reach = pd.read_csv(out / "time_to_oracle.csv") if (out / "time_to_oracle.csv").exists() else None
    if reach is not None:
        lines += ["", "Time to come within 2% of the oracle (first evaluation point; training wall time with "
                  f"{meta['jobs']} runs sharing the machine):", "",
                  "| learner | seeds that get there | steps (median) | wall time (median) |", "|---|---|---|---|"]
        for algorithm, group in reach.groupby("algorithm", sort=False):
            got = group.dropna()
            steps = f"{got['steps'].median():,.0f}" if len(got) else "never"
            wall = f"{got['wall_time_s'].median():.0f} s" if len(got) else "-"
            lines.append(f"| {LABELS.get(algorithm, algorithm)} | {len(got)}/{len(group)} | {steps} | {wall} |")
    beats = bool((wins["oracle_minus_static"] > 0).all() and (wins["oracle_minus_random"] > 0).all())
    lines += [
        "",
        f"The oracle beats static and random on {'every' if beats else 'NOT every'} seed: oracle - static "
        f"{wins['oracle_minus_static'].min():+.3f} to {wins['oracle_minus_static'].max():+.3f}, oracle - random "
        f"{wins['oracle_minus_random'].min():+.3f} to {wins['oracle_minus_random'].max():+.3f} utility per decision.",
        "",
        f"![Fig. 15]({rel}/fig15_three_users.png)",
        "",
        f"The paper's three users, each agent's decision (learners: seed 0; utility: mean over seeds of "
        f"{budget['example_draws']:,} Monte Carlo draws of channel, seeds and prompt effect):",
        "",
        "| agent | N (dog 7.6 / garden 8.2 / city 8.5) | power W | P(satisfied) | expected utility |",
        "|---|---|---|---|---|",
    ]
    for agent, group in example.groupby("agent", sort=False):
        first = group[group["seed"] == group["seed"].min()].sort_values("user")
        utility = group.groupby("seed")["utility"].first().mean()
        lines.append(f"| {LABELS.get(agent, agent)} | {' / '.join(str(int(n)) for n in first['n_images'])} | "
                     f"{' / '.join(f'{p:.2f}' for p in first['power_w'])} | "
                     f"{' / '.join(f'{p:.2f}' for p in first['p_satisfied'])} | {utility:.3f} |")
    return "\n".join(lines) + "\n"


def discussion(out: Path) -> str:
    """Where and why our Figs. 14-15 differ from the paper's, with the figures from this run."""
    out = Path(out)
    if not (out / "final.csv").exists():
        return ""
    final = pd.read_csv(out / "final.csv")
    curves = pd.read_csv(out / "curves.csv")
    summary = summarise(final).set_index("agent")
    learners = [a for a in LEARNERS if a in summary.index]
    ranking = sorted(learners, key=lambda a: -summary.loc[a, "utility"])
    # a fifth of the way through training: past the warm-up, before convergence
    steps = np.sort(curves["steps"].unique())
    early_step = int(steps[np.argmin(np.abs(steps - steps.max() / 5))])
    early = curves[curves["steps"] == early_step].groupby("algorithm")["eval_utility"].mean()
    ablation = "not run"
    if {"d3pg", "ddpg"} <= set(final["agent"]):
        m, lo, hi, _ = paired_difference(final, "d3pg", "ddpg")
        ablation = f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] utility per decision at the end of training"
    lines = [
        "### Where and why ours differ (Figs. 14-15)",
        "",
        f"- **Ranking.** Converged utility here ranks {' > '.join(LABELS[a] for a in ranking)} (mean over seeds; "
        "the claims table says which gaps are significant); the paper has D3PG ahead of PPO (+7.0%) and SAC (+67.8%).",
        f"- **Early learning.** After {early_step:,} steps the learners stand at "
        + ", ".join(f"{LABELS[a]} {early[a]:.2f}" for a in learners if a in early.index)
        + f" (fastest start: {LABELS[early.idxmax()]}). The diffusion actor's own effect is D3PG minus its MLP "
        f"ablation with the same critics: {ablation}.",
        "- **The problem is a contextual bandit.** Every decision epoch brings fresh users whatever was decided, so "
        "an episode's return is a sum of independent one-step rewards; all learners use gamma = 0 (see "
        "scenarios/paper/provisioning.yaml). The paper's discounting and network sizes are not known to us; our "
        "hyperparameters were tuned on seed 0 only.",
        "- **Percentages.** Utility (eq. 22a) is negative on average here: an unmet threshold costs rho = 1 and the "
        "Weber-Fechner quality term is negative below the threshold. A percentage of a negative baseline is shown "
        "for completeness; the utility difference with its CI is the comparison to read. The paper's QoE scale is "
        "not the same quantity.",
        "- **The oracle** maximises each decision's expected utility knowing the quality, channel and QoE models "
        "(not the shadowing realisation or a prompt's random effect); it is the ceiling the gaps refer to, which the "
        "paper does not have.",
    ]
    return "\n".join(lines) + "\n"
