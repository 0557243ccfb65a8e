"""Where a diffusion actor should matter: decisions with several quite different near-optimal actions.

Under a tight power budget, splitting it between two users leaves both links too
poor to deliver a decodable image, while giving (almost) all of it to either user
serves that one: the expected utility over the power share ``s`` of the first
user has two peaks, near ``s = 0`` and ``s = 1``, of nearly equal height, and a
valley at the equal split. A deterministic MLP actor trained by the deterministic
policy gradient can only output one action per state; D3PG's actor maps chain
noise to actions, so it *can* represent both peaks. Whether it does is measured
here, on the exact expected utility (no reward noise: the comparison is about
representation, not estimation).

:func:`reproduce` (``python -m sim paper multimodality``) does, into ``out``:

1. **Landscapes** (``states.csv``): for held-out two-user states of
   :class:`TightBudgetBandit` (the paper's MASP and channel at ``p_total_w``, the
   scenario's QoE), the best expected utility over the images for each power
   share on a grid; a state is *multimodal* when its two best local maxima are at
   least ``MODE_SEPARATION`` apart in ``s`` and within ``NEAR_OPTIMAL`` of the
   optimum in utility.
2. **Training**: D3PG and its MLP-actor ablation (DDPG, same critics), each on
   ``seeds`` seeds, on the bandit (``gamma = 0``).
3. **Actions** (``actions.csv``): on every held-out state, each trained actor's
   deterministic action and its regret against the landscape's optimum, and for
   D3PG ``samples`` chains with fresh noise: the share of samples near each mode.
4. **The figure** (``multimodality.png``): the landscape of the most balanced
   multimodal state with D3PG's sampled power shares and both actors'
   deterministic ones, and per-state regret of the two actors.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from sim.config import Scenario, load_scenario
from sim.executors import run_tasks
from sim.decisions import Provision, ProvisioningObservation
from sim.paper.common import fmt_ci, pyplot, wall_time_sentence, save_figure
from sim.stats import mean_ci, paired_difference

DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "paper" / "provisioning.yaml"
#: Two local maxima count as two modes when this far apart in the first user's power share ...
MODE_SEPARATION = 0.5
#: ... and both within this share of the optimum's magnitude.
NEAR_OPTIMAL = 0.02
#: Power-share grid of the landscapes, and the images tried per user.
SHARES = np.linspace(0.0, 1.0, 41)
IMAGES = (1, 2, 4, 8)


def study_scenario(path: Path = DEFAULT_SCENARIO, p_total_w: float = 0.03, form: str = "gated") -> Scenario:
    """The paper's MASP for two users per epoch with a tight power budget and the given QoE form."""
    scenario = load_scenario(path)
    masp = scenario.masps[0].model_copy(update={"p_total_w": float(p_total_w), "max_users_per_epoch": 2})
    return scenario.model_copy(update={"masps": [masp], "qoe": scenario.qoe.model_copy(update={"form": form})})


class TightBudgetBandit(gym.Env):
    """Two users per decision, a tight power budget, reward = the exact expected utility per user.

    **Observation / action**: as ``sim/Provisioning-v0`` for ``Q = 2`` (:func:`sim.rl.features.observation_vector`;
    images from the first two entries, the softmax power split from the last two). **Users**: prompts from the
    shipped set, thresholds uniform in ``thresholds``, distances uniform in ``distances_m`` (near each other, so
    both modes matter). **Reward**: the one-round oracle's exact expected utility of the decision
    (:meth:`agents.oracle.OracleProvisioning.expected_utility`) divided by 2. Every step is terminal.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario, distances_m: tuple[float, float] = (110.0, 130.0),
                 thresholds: tuple[float, float] = (7.8, 8.2)):
        from sim.backends import agent_context, build_provisioning_agent, build_service_models
        from sim.prompting.prompts import load_prompts
        from sim.rl.features import observation_space

        self.scenario = scenario
        self.models = build_service_models(scenario)
        self.oracle = build_provisioning_agent("oracle", {"strategy": scenario.training.strategy},
                                               agent_context(scenario, self.models), np.random.default_rng(0))
        self.prompts = [p.text for p in load_prompts(None)]
        self.distances_m, self.thresholds = distances_m, thresholds
        self.p_total_w = float(scenario.masps[0].p_total_w)
        self.n_max = int(scenario.service.max_images_per_round)
        self.observation_space = observation_space(2)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self._obs: ProvisioningObservation | None = None

    def draw_state(self, rng: np.random.Generator) -> ProvisioningObservation:
        """Two users: prompts, thresholds and distances drawn from ``rng``."""
        from sim.model.quality import prompt_complexity

        prompts = tuple(self.prompts[int(i)] for i in rng.integers(len(self.prompts), size=2))
        distances = rng.uniform(*self.distances_m, size=2)
        return ProvisioningObservation(
            time_s=0.0, masp=self.scenario.masps[0].name, p_total_w=self.p_total_w, max_images=self.n_max,
            user_ids=np.arange(2), prompts=prompts, complexities=np.array([prompt_complexity(p) for p in prompts]),
            distances_m=distances, thresholds=rng.uniform(*self.thresholds, size=2),
            mean_snr_db_at_1w=np.asarray(self.models.channel.mean_snr_db(1.0, distances), dtype=float),
            rounds_done=np.zeros(2, dtype=int), best_scores=np.zeros(2))

    def vector(self, obs: ProvisioningObservation) -> np.ndarray:
        from sim.rl.features import observation_vector

        return observation_vector(obs, self.scenario, n_users=2)

    def provision(self, action) -> Provision:
        from sim.rl.features import batch_provision

        return batch_provision(np.asarray(action, dtype=float), 2, self.n_max, self.p_total_w, "feasible")

    def value(self, obs: ProvisioningObservation, provision: Provision) -> float:
        """Expected utility per user of ``provision`` for the users of ``obs``."""
        return float(self.oracle.expected_utility(obs, provision)) / 2.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._obs = self.draw_state(self.np_random)
        return self.vector(self._obs), {}

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        reward = self.value(self._obs, self.provision(action))
        self._obs = self.draw_state(self.np_random)
        return self.vector(self._obs), reward, True, False, {}


def landscape(env: TightBudgetBandit, obs: ProvisioningObservation) -> tuple[np.ndarray, np.ndarray]:
    """Best expected utility per user over the images, for each power share of user 0 in :data:`SHARES`.

    Returns ``(values, best images)`` (``(len(SHARES),)`` and ``(len(SHARES), 2)``).
    """
    values, best = np.empty(len(SHARES)), np.zeros((len(SHARES), 2), dtype=int)
    for k, s in enumerate(SHARES):
        candidates = [(env.value(obs, Provision([n1, n2], [s * env.p_total_w, (1 - s) * env.p_total_w])), (n1, n2))
                      for n1 in IMAGES for n2 in IMAGES]
        values[k], best[k] = max(candidates)
    return values, best


def modes(values: np.ndarray) -> list[int]:
    """Indices of the local maxima of a landscape (plateaus count once), best first."""
    v = np.asarray(values, dtype=float)
    peaks = [k for k in range(len(v)) if (k == 0 or v[k] > v[k - 1]) and (k == len(v) - 1 or v[k] >= v[k + 1])]
    return sorted(peaks, key=lambda k: -v[k])


def is_multimodal(values: np.ndarray) -> bool:
    """Two local maxima at least :data:`MODE_SEPARATION` apart in share, both within :data:`NEAR_OPTIMAL` of the best."""
    v = np.asarray(values, dtype=float)
    peaks = modes(v)
    best = v[peaks[0]]
    near = [k for k in peaks if v[k] >= best - NEAR_OPTIMAL * abs(best)]
    return any(abs(SHARES[a] - SHARES[b]) >= MODE_SEPARATION for a in near for b in near)


@dataclass(frozen=True)
class MultimodalityBudget:
    steps: int
    seeds: tuple[int, ...]
    states: int
    samples: int
    quick: bool = False


FULL = MultimodalityBudget(steps=3_000, seeds=(0, 1, 2, 3, 4), states=40, samples=256)
QUICK = MultimodalityBudget(steps=120, seeds=(0,), states=4, samples=32, quick=True)

HYPERPARAMETERS = {"gamma": 0.0, "learning_starts": 200, "batch_size": 128, "train_freq": 1, "actor_lr": 1.0e-3,
                   "critic_lr": 1.0e-3, "exploration_noise": 0.3, "denoising_steps": 5}


def _train(scenario: Scenario, actor: str, seed: int, steps: int, out: Path) -> str:
    """Train one actor on the bandit (worker process); the saved model's path."""
    import torch

    from sim.rl.algos.d3pg import D3PG, D3PGConfig

    torch.set_num_threads(1)
    path = out / "models" / f"{actor}-seed{seed}-steps{steps}.pt"
    if path.exists():  # finished before: kept
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = TightBudgetBandit(scenario)
    env.reset(seed=seed)
    config = D3PGConfig(**{**HYPERPARAMETERS, "learning_starts": min(HYPERPARAMETERS["learning_starts"], steps // 2),
                           "seed": seed})
    model = D3PG(env, config, actor="diffusion" if actor == "d3pg" else "mlp")
    model.learn(total_timesteps=steps)
    partial = path.with_suffix(".partial")
    model.save(str(partial))
    partial.replace(path)
    return str(path)


def _actions(scenario: Scenario, actor: str, seed: int, model_path: str, states: list[dict], samples: int) -> list[dict]:
    """Each held-out state: the actor's deterministic action and regret; D3PG's sampled shares (worker process)."""
    import torch

    from sim.rl.algos.d3pg import D3PG

    torch.set_num_threads(1)
    env = TightBudgetBandit(scenario)
    model = D3PG.load(model_path)
    generator = torch.Generator().manual_seed(10_000 + seed)
    rows = []
    for state in states:
        obs = _observation(env, state)
        vector = env.vector(obs)
        action, _ = model.predict(vector, deterministic=True)
        decision = env.provision(action)
        share = float(decision.power_w[0] / max(decision.power_w.sum(), 1e-12))
        value = env.value(obs, decision)
        row = {"actor": actor, "seed": seed, "state": state["state"], "share": share, "value": value,
               "regret": state["best"] - value, "n0": int(decision.n_images[0]), "n1": int(decision.n_images[1])}
        if actor == "d3pg":  # fresh chain noise, no exploration noise: the actor's own distribution
            with torch.no_grad():
                batch = torch.as_tensor(np.repeat(vector[None], samples, axis=0), dtype=torch.float32)
                raw = model.actor.sample(batch, generator).numpy()
            drawn = [env.provision(model.scale_action(a)) for a in raw]
            shares = np.array([d.power_w[0] / max(d.power_w.sum(), 1e-12) for d in drawn])
            row.update(sample_low=float(np.mean(shares < 0.25)), sample_high=float(np.mean(shares > 0.75)),
                       sample_middle=float(np.mean((shares >= 0.25) & (shares <= 0.75))),
                       sample_shares=json.dumps(np.round(shares, 3).tolist()))
        rows.append(row)
    return rows


def _observation(env: TightBudgetBandit, state: dict) -> ProvisioningObservation:
    return env.draw_state(np.random.default_rng(state["rng_seed"]))


def held_out_states(env: TightBudgetBandit, count: int, first_seed: int = 1_000_000) -> pd.DataFrame:
    """``count`` states from seeds no training episode uses, with their landscapes and modes."""
    rows = []
    for k in range(count):
        obs = _observation(env, {"rng_seed": first_seed + k})
        values, _ = landscape(env, obs)
        peaks = modes(values)
        # the optimum: the landscape's grid or the one-round oracle's exact search, whichever is higher
        best = max(float(values.max()), env.value(obs, env.oracle.decide(obs)))
        rows.append({"state": k, "rng_seed": first_seed + k, "best": best,
                     "best_share": float(SHARES[int(values.argmax())]), "equal_split": float(values[len(SHARES) // 2]),
                     "multimodal": is_multimodal(values), "modes": json.dumps([float(SHARES[p]) for p in peaks[:3]]),
                     "landscape": json.dumps(np.round(values, 5).tolist()),
                     "distances_m": json.dumps(np.round(obs.distances_m, 1).tolist()),
                     "thresholds": json.dumps(np.round(obs.thresholds, 2).tolist())})
    return pd.DataFrame(rows)


def plot(states: pd.DataFrame, actions: pd.DataFrame, path: Path) -> None:
    """Left: the most balanced multimodal state's landscape with the actors' power shares; right: regret per state."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    multi = states[states["multimodal"]]
    shown = multi if len(multi) else states
    # the most balanced: the smallest gap between its two best modes
    gaps = [abs(np.diff(sorted(np.array(json.loads(r))[modes(np.array(json.loads(r)))][:2]))[0])
            if len(modes(np.array(json.loads(r)))) > 1 else np.inf for r in shown["landscape"]]
    state = shown.iloc[int(np.argmin(gaps))]
    values = np.array(json.loads(state["landscape"]))
    ax = axes[0]
    ax.plot(SHARES, values, color="black", label="best expected utility per user over N")
    ax.set_xlabel("power share of user 0")
    ax.set_ylabel("expected utility per user")
    twin = ax.twinx()
    d3pg = actions[(actions["actor"] == "d3pg") & (actions["state"] == state["state"])]
    if len(d3pg) and "sample_shares" in d3pg:
        samples = np.concatenate([json.loads(s) for s in d3pg["sample_shares"].dropna()])
        twin.hist(samples, bins=np.linspace(0, 1, 21), color="tab:red", alpha=0.3,
                  label=f"D3PG samples, fresh chain noise, all {len(d3pg)} seeds pooled")
    twin.set_ylabel("D3PG samples")
    for actor, color in (("d3pg", "tab:red"), ("ddpg", "tab:purple")):
        rows = actions[(actions["actor"] == actor) & (actions["state"] == state["state"])]
        for k, share in enumerate(rows["share"]):
            ax.axvline(share, color=color, linestyle="--" if actor == "d3pg" else ":", alpha=0.8,
                       label=f"{'D3PG' if actor == 'd3pg' else 'DDPG (MLP actor)'} deterministic" if k == 0 else None)
    ax.set_title(f"state {int(state['state'])}: distances {state['distances_m']} m, thresholds {state['thresholds']}",
                 fontsize=9)
    lines, labels = ax.get_legend_handles_labels()
    l2, lab2 = twin.get_legend_handles_labels()
    ax.legend(lines + l2, labels + lab2, fontsize=7, loc="lower center")
    ax.grid(alpha=0.3)
    ax = axes[1]
    per_state = actions.groupby(["actor", "state"])["regret"].mean().unstack("actor")
    if {"d3pg", "ddpg"} <= set(per_state.columns):
        colors = ["tab:red" if m else "tab:gray" for m in states.set_index("state").loc[per_state.index, "multimodal"]]
        ax.scatter(per_state["ddpg"], per_state["d3pg"], c=colors, s=18)
        top = float(np.nanmax(per_state[["ddpg", "d3pg"]].to_numpy())) if len(per_state) else 1.0
        ax.plot([0, top], [0, top], color="black", linewidth=0.8)
    ax.set_xlabel("DDPG (MLP actor) regret, utility per user")
    ax.set_ylabel("D3PG regret, utility per user")
    ax.set_title("regret per held-out state (red: multimodal), mean over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def summary(states: pd.DataFrame, actions: pd.DataFrame) -> dict[str, Any]:
    """The headline figures: share of multimodal states, each actor's regret, D3PG's mode coverage."""
    per_seed = actions.merge(states[["state", "multimodal"]], on="state")
    out: dict[str, Any] = {"states": len(states), "multimodal_states": int(states["multimodal"].sum())}
    for subset, frame in (("all", per_seed), ("multimodal", per_seed[per_seed["multimodal"]])):
        regret = frame.groupby(["actor", "seed"])["regret"].mean().unstack("actor")
        for actor in ("d3pg", "ddpg"):
            if actor in regret:
                out[f"{actor}_regret_{subset}"] = mean_ci(regret[actor].to_numpy())
        if {"d3pg", "ddpg"} <= set(regret.columns):
            out[f"regret_difference_{subset}"] = paired_difference(regret["d3pg"].to_numpy(), regret["ddpg"].to_numpy())
    d3pg = per_seed[(per_seed["actor"] == "d3pg") & per_seed["multimodal"]]
    if len(d3pg):
        both = (d3pg["sample_low"] >= 0.1) & (d3pg["sample_high"] >= 0.1)
        out["d3pg_covers_both_modes"] = float(both.mean())
        out["d3pg_samples_in_valley"] = float(d3pg["sample_middle"].mean())
    ddpg = per_seed[(per_seed["actor"] == "ddpg") & per_seed["multimodal"]]
    if len(ddpg):
        out["ddpg_in_valley"] = float(((ddpg["share"] >= 0.25) & (ddpg["share"] <= 0.75)).mean())
    return out


def reproduce(out: Path, quick: bool = False, jobs: int | None = None, scenario_path: Path = DEFAULT_SCENARIO,
              budget: MultimodalityBudget | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the multimodality study into ``out``; returns its tables and headline figures."""
    import torch  # noqa: F401  (the learn extra)

    budget = budget or (QUICK if quick else FULL)
    jobs = jobs or min(2, os.cpu_count() or 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = study_scenario(scenario_path)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    log(f"landscapes of {budget.states} held-out states")
    states = held_out_states(TightBudgetBandit(scenario), budget.states)
    states.to_csv(out / "states.csv", index=False)
    timings["landscapes_s"] = time.perf_counter() - t

    t = time.perf_counter()
    tasks = [(scenario, actor, seed, budget.steps, out) for seed in budget.seeds for actor in ("d3pg", "ddpg")]
    log(f"training {len(tasks)} actors ({budget.steps} steps each) in {jobs} processes")
    paths = run_tasks(_train, tasks, workers=jobs)
    timings["training_s"] = time.perf_counter() - t

    t = time.perf_counter()
    records = states[["state", "rng_seed", "best"]].to_dict("records")
    results = run_tasks(_actions, [(scenario, a, s, p, records, budget.samples)
                                   for (_, a, s, _, _), p in zip(tasks, paths)], workers=jobs)
    actions = pd.DataFrame([row for rows in results for row in rows])
    actions.to_csv(out / "actions.csv", index=False)
    timings["actions_s"] = time.perf_counter() - t

    plot(states, actions, out / "multimodality.png")
    headline = summary(states, actions)
    meta = {"budget": asdict(budget), "quick": quick, "jobs": jobs, "scenario": str(scenario_path),
            "p_total_w": scenario.masps[0].p_total_w, "qoe_form": scenario.qoe.form, "timings_s": timings,
            "total_s": sum(timings.values()), "summary": headline}
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=float) + "\n", encoding="utf-8")
    return {"states": states, "actions": actions, "summary": headline, "meta": meta}


def section(out: Path, rel: str = "multimodality") -> str:
    """The report's markdown section (empty when the study has not run)."""
    out = Path(out)
    if not (out / "run.json").exists():
        return ""
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    s, budget = meta["summary"], meta["budget"]

    def ci(key: str) -> str:
        return fmt_ci(*s[key]) if key in s else "n/a"

    lines = [
        "## Where a diffusion actor should matter: multimodal decisions",
        "",
        f"Two users, the paper's MASP with a tight budget P_total = {meta['p_total_w']:g} W, {meta['qoe_form']} QoE: "
        f"of {s['states']} held-out states, {s['multimodal_states']} have two near-optimal power splits at least "
        f"{MODE_SEPARATION:g} apart in share (within {NEAR_OPTIMAL:.0%} of the optimum; typically 'all to user 0' "
        "and 'all to user 1', with a valley at the equal split). D3PG and its MLP-actor ablation trained on these "
        f"states ({budget['steps']:,} steps, {len(budget['seeds'])} seeds, exact expected utility as reward). "
        + wall_time_sentence(meta),
        "",
        f"![multimodality]({rel}/multimodality.png)",
        "",
        "| | D3PG | DDPG (MLP actor) | D3PG - DDPG |",
        "|---|---|---|---|",
        f"| regret, all states | {ci('d3pg_regret_all')} | {ci('ddpg_regret_all')} | {ci('regret_difference_all')} |",
        f"| regret, multimodal states | {ci('d3pg_regret_multimodal')} | {ci('ddpg_regret_multimodal')} | "
        f"{ci('regret_difference_multimodal')} |",
        "",
        f"On the multimodal states, D3PG's samples (fresh chain noise) put at least 10% on each mode in "
        f"{s.get('d3pg_covers_both_modes', float('nan')):.0%} of (state, seed) pairs and "
        f"{s.get('d3pg_samples_in_valley', float('nan')):.0%} of samples in the valley (share 0.25-0.75); the MLP "
        f"actor's deterministic action is in the valley in {s.get('ddpg_in_valley', float('nan')):.0%} of them. "
        "Regret is utility per user below the landscape's optimum (mean over seeds, 95% CI over seeds). In the "
        "figure, the samples of all seeds are pooled: a mode per seed shows as mass at both ends.",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["FULL", "QUICK", "MultimodalityBudget", "TightBudgetBandit", "held_out_states", "is_multimodal",
           "landscape", "modes", "plot", "reproduce", "section", "study_scenario", "summary"]
