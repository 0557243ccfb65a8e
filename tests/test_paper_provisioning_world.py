"""The sequential-world provisioning comparison on a tiny budget (its numbers mean nothing; its plumbing is real)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from sim.config import load_scenario  # noqa: E402
from sim.paper import provisioning_world as pw  # noqa: E402
from sim.paper.report import write_report  # noqa: E402
from sim.rl.world_env import TRAINING_SEED_BASE, WorldEnv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = pw.WorldBudget(steps=48, tuning_steps=24, train_seeds=(1, 2), tuning_seed=0, eval_seeds=(100, 101),
                      eval_every=24, eval_episodes=1, lookahead_rollouts=4, n_users=4, quick=True)


@pytest.fixture(scope="module")
def tiny_scenario(tmp_path_factory) -> Path:
    """The sequential paper scenario with learners that start learning at once."""
    data = yaml.safe_load((ROOT / "scenarios" / "paper" / "provisioning_world.yaml").read_text())
    small = {"learning_starts": 8, "batch_size": 8}
    data["training"]["hyperparameters"] = {"d3pg": {**small, "denoising_steps": 2}, "ddpg": small, "sac": small,
                                           "ppo": {"n_steps": 16, "batch_size": 8}}
    path = tmp_path_factory.mktemp("paper_world") / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def reproduced(tiny_scenario, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("provisioning_world")
    result = pw.reproduce(out, jobs=1, scenario_path=tiny_scenario, budget=TINY, log=lambda _: None)
    return {"out": out, **result}


def test_every_agent_runs_on_every_evaluation_seed(reproduced):
    runs = pd.read_csv(reproduced["out"] / "runs.csv")
    for label in pw.BASELINES:
        group = runs[runs["agent"] == label]
        assert sorted(group["seed"]) == list(TINY.eval_seeds) and (group["train_seed"] == -1).all(), label
    for label in pw.TRAINED:
        group = runs[runs["agent"] == label]
        assert len(group) == len(TINY.train_seeds) * len(TINY.eval_seeds), label
        assert set(group["train_seed"]) == set(TINY.train_seeds) and set(group["provisioning_agent"]) == {"learned"}
    assert (runs["users"] == TINY.n_users).all()
    # the report's table: a learner's value per seed is the mean over its training runs
    per_seed = pw.per_world_seed(runs).set_index(["agent", "seed"])["mean_utility"]
    d3pg = runs[(runs["agent"] == "d3pg") & (runs["seed"] == 100)]["mean_utility"].mean()
    assert per_seed[("d3pg", 100)] == pytest.approx(d3pg)
    assert list(reproduced["summary"]["agent"]) == [*pw.BASELINES, *pw.TRAINED]


def test_compare_yaml_reruns_a_world_run_with_the_compare_command(reproduced, tmp_path):
    from sim.config import load_scenario as load
    from sim.world.compare import compare, make_arms

    out = reproduced["out"]
    scenario = load(out / "compare.yaml")
    labels = [a.display for a in scenario.compare.provisioning_agents]
    assert labels[:len(pw.BASELINES)] == list(pw.BASELINES) and "d3pg-run1" in labels
    _, again = compare(scenario, make_arms(scenario, ["static_tuned", "d3pg-run1"], None), [100],
                       out=tmp_path / "cmp", workers=1, quiet=True)
    runs = pd.read_csv(out / "runs.csv")
    for label, agent, train_seed in (("static_tuned", "static_tuned", -1), ("d3pg-run1", "d3pg", 1)):
        row = runs[(runs["agent"] == agent) & (runs["seed"] == 100) & (runs["train_seed"] == train_seed)].iloc[0]
        assert again[again["agent"] == label]["mean_utility"].iloc[0] == pytest.approx(row["mean_utility"], abs=1e-12)


def test_tuning_picks_the_best_curve_and_the_final_runs_use_it(reproduced):
    out = reproduced["out"]
    tuning = pd.read_csv(out / "tuning.csv")
    chosen = json.loads((out / "chosen.json").read_text())
    for learner, group in tuning.groupby("learner"):
        assert len(group) == len(pw.tuning_grid(learner, quick=True))
        assert json.loads(group.loc[group["score"].idxmax(), "hyperparameters"]) == chosen[learner]
    assert chosen[pw.PENALISED] == chosen["d3pg"]
    for label in pw.TRAINED:
        saved = yaml.safe_load((out / "train" / f"{label}-seed1" / "scenario.yaml").read_text())["training"]
        algorithm = "d3pg" if label == pw.PENALISED else label
        for key, value in chosen[label].items():
            assert saved["hyperparameters"][algorithm][key] == value
        assert saved["action_mapping"] == ("penalised" if label == pw.PENALISED else "feasible")
        assert saved["eval_seed"] == TINY.tuning_seed and saved["env"] == "world"
    statics = pd.read_csv(out / "tuning_static.csv")
    assert chosen["static_tuned"]["n_images"] == int(statics.loc[statics["utility"].idxmax(), "n_images"])


def test_no_training_world_is_an_evaluation_world(reproduced, tiny_scenario):
    # curve episodes: 1,000,000 + 1000 x tuning seed + i; training episodes: >= TRAINING_SEED_BASE
    env = WorldEnv(pw.study_scenario(load_scenario(tiny_scenario), TINY))
    env.reset(seed=None)
    roots = [env.reset()[1]["root_seed"] for _ in range(50)]
    assert min(roots) >= TRAINING_SEED_BASE > 1_000_000 > max(TINY.eval_seeds)


def test_finished_runs_are_not_trained_again(reproduced, tiny_scenario):
    out = reproduced["out"]
    latest = out / "train" / "d3pg-seed1" / "checkpoints" / "latest" / "checkpoint.json"
    before = os.stat(latest).st_mtime_ns
    scenario = pw.study_scenario(load_scenario(tiny_scenario), TINY)
    chosen = json.loads((out / "chosen.json").read_text())
    logged = []
    curves = pw.train_all(scenario, TINY, chosen, out, jobs=1, log=logged.append)
    assert logged == [] and os.stat(latest).st_mtime_ns == before
    assert set(curves["agent"]) == set(pw.TRAINED)


def test_the_lookahead_builds_on_the_tuned_static_policy(tiny_scenario):
    scenario = load_scenario(tiny_scenario)
    configs = pw.baseline_configs(scenario, TINY, tuned_images=3)
    assert configs["lookahead"].params["base_images"] == 3 == configs["static_tuned"].params["n_images"]
    assert configs["n_max"].params["n_images"] == scenario.service.max_images_per_round
    assert configs["lookahead"].params["rollouts"] == TINY.lookahead_rollouts


def test_claims_are_paired_by_seed_with_holm_correction():
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(10):
        base = rng.normal(-1.0, 0.3)
        values = {"static": base, "lookahead": base + 0.2, "d3pg": base + 0.1 + rng.normal(0, 0.01),
                  "sac": base + 0.1, "ppo": base + 0.1}
        rows += [{"agent": a, "seed": seed, "train_seed": -1, "mean_utility": v, "mean_qoe": 0.0, "served_users": 1,
                  "users": 2, "mean_latency_s": 1.0, "mean_images": 2.0, "mean_rounds": 1.0} for a, v in values.items()]
    claims = pw.claims_table(pd.DataFrame(rows)).set_index(["a", "b"])
    lookahead = claims.loc[("lookahead", "static")]
    assert lookahead["diff"] == pytest.approx(0.2) and lookahead["wins"] == 10 and lookahead["low"] > 0
    assert lookahead["pct"] == pytest.approx(100 * 0.2 / abs(np.mean([r["mean_utility"] for r in rows
                                                                        if r["agent"] == "static"])))
    assert (claims["p_holm"] >= claims["p"] - 1e-15).all()
    d3pg_sac = claims.loc[("d3pg", "sac")]
    assert d3pg_sac["paper_pct"] == 67.8 and d3pg_sac["low"] < 0 < d3pg_sac["high"]
    # claims whose agents did not run are left out
    assert ("d3pg", "ddpg") not in claims.index


def test_time_to_lookahead_is_the_first_point_within_five_percent():
    levels = pd.DataFrame({"agent": ["lookahead", "lookahead"], "utility": [-1.0, -1.0]})
    curves = pd.DataFrame({"agent": ["ppo"] * 3 + ["sac"] * 2, "seed": [1, 1, 1, 1, 1],
                           "steps": [100, 200, 300, 100, 200], "eval_utility": [-1.2, -1.04, -0.9, -1.3, -1.2],
                           "wall_time_s": [1.0, 2.0, 3.0, 1.0, 2.0]})
    reach = pw.time_to_lookahead(curves, levels).set_index("agent")
    assert reach.loc["ppo", "steps"] == 200 and reach.loc["ppo", "wall_time_s"] == 2.0
    assert np.isnan(reach.loc["sac", "steps"])


def test_figures_report_section_and_claims_rows(reproduced):
    out = reproduced["out"]
    for name in ("world_training_curves.png", "world_compare.png", "compare.yaml", "claims.csv", "table.csv", "levels.csv",
                 "time_to_lookahead.csv", "training_runs.csv", "run.json"):
        assert (out / name).exists(), name
    text = pw.section(out, "provisioning_world")
    assert "## Provisioning in the sequential world" in text and "lookahead oracle" in text and "Holm" in text
    for label in pw.TRAINED:
        assert pw.LABELS[label] in text
    rows = pw.claims(out)
    assert {r["claim"] for r in rows} >= {"sequential world: D3PG above SAC", "sequential world: D3PG above PPO"}
    # the paper's percentages are judged for magnitude: inside, above or below our interval (or too few seeds)
    magnitude = [r for r in rows if r["paper"].startswith("+")]
    assert len(magnitude) == 2
    assert all(("our interval" in r["verdict"]) != ("too few" in r["verdict"]) for r in magnitude)
    # the paper report picks the part up from its directory
    root = out.parent / "report_root"
    (root / "provisioning_world").mkdir(parents=True)
    for path in out.glob("*.*"):
        (root / "provisioning_world" / path.name).write_bytes(path.read_bytes())
    report = write_report(root, ["python -m sim paper provisioning-world --quick"]).read_text()
    assert "sequential world: D3PG above SAC" in report and "## Provisioning in the sequential world" in report
    # without the part's raw results (a fresh clone), the report is rebuilt from the saved report_part.json
    saved = json.loads((root / "provisioning_world" / "report_part.json").read_text())
    assert saved["sections"] == [text] and saved["claims"] == rows
    for path in (root / "provisioning_world").glob("*.csv"):
        path.unlink()
    again = write_report(root, ["python -m sim paper provisioning-world --quick"]).read_text()
    assert again.split("## Claims", 1)[1] == report.split("## Claims", 1)[1]
