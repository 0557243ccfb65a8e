"""The Figs. 11-13 reproduction and the paper report on a tiny budget (numbers meaningless, plumbing real)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from sim.config import load_scenario  # noqa: E402
from sim.paper import prompt_claims as pc  # noqa: E402
from sim.paper import prompt_world as pw  # noqa: E402
from sim.paper import prompting as pr  # noqa: E402
from sim.paper.report import write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUDGET = pr.PromptingBudget(seeds=(0,), steps=64, eval_every=64, eval_episodes_per_prompt=1, n_train=4, held_out=3,
                            demo_seeds=1, world_users=3, thresholds=(7.5, 8.5), n_images=(1, 2), claim_users=4,
                            model_draws=30)


@pytest.fixture(scope="module")
def tiny_scenario(tmp_path_factory) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "paper" / "prompting.yaml").read_text())
    data["service"]["max_rounds"] = 3
    data["training"] = {"hyperparameters": {"prompt_gail": {"n_steps": 64, "batch_size": 32},
                                            "prompt_ppo": {"n_steps": 64, "batch_size": 32}}}
    path = tmp_path_factory.mktemp("prompting") / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def reproduced(tiny_scenario, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("paper") / "prompting"
    result = pr.reproduce(out, jobs=1, scenario_path=tiny_scenario, budget=BUDGET, log=lambda _: None)
    return out, result


def test_reproduction_writes_every_table_and_figure(reproduced):
    out, _ = reproduced
    for name in ("demo.parquet", "curves.csv", "final.csv", "summary.csv", "world_cells.csv", "fitted_normal.csv",
                 "claims.csv", "success_rates.csv", "claim_users.csv", "resources.csv", "held_out_prompts.yaml", "run.json",
                 "learnability.csv"):
        assert (out / name).exists(), name
    for name in ("fig11_training.png", "fig12_rounds.png", "fig13_resources.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "run.json").read_text())
    assert meta["train_prompts"] == 4 and meta["held_out_prompts"] == 3


def test_every_policy_is_evaluated_on_held_out_prompts(reproduced):
    out, result = reproduced
    summary = result["summary"].set_index("policy")
    assert set(summary.index) == set(pr.BASELINES) | {name for name, _, _ in pr.LEARNERS}
    assert summary.loc["expert", "agreement"] == pytest.approx(1.0)  # D labels the held-out prompts too
    assert summary["success"].between(0, 1).all()
    split = json.loads((out / "train" / "irl-seed0" / "split.json").read_text())
    held = [p["text"] for p in yaml.safe_load((out / "held_out_prompts.yaml").read_text())["prompts"]]
    assert sorted(held) == sorted(split["held_out"]) and not set(held) & set(split["train"])


def test_world_cells_cover_the_grid_and_the_learned_policy_ran_in_the_world(reproduced):
    _, result = reproduced
    cells = result["cells"]
    assert sorted(zip(cells["policy"], cells["threshold"], cells["n_images"])) == sorted(
        (p, t, n) for p in pr.WORLD_POLICIES for t in BUDGET.thresholds for n in BUDGET.n_images)
    assert (cells["users"] == BUDGET.world_users).all()
    assert (cells["mean_rounds"].between(1, 3)).all()


def test_claims_run_every_seed_on_distinct_users_and_count_them(reproduced):
    out, result = reproduced
    runs = pd.read_csv(out / "claim_users.csv")
    assert set(runs["policy"]) == set(pc.CLAIM_POLICIES)
    # every (seed, threshold) cell has a world seed of its own, shared by every policy of the cell
    seeds = runs.groupby(["training_seed", "threshold_index"])["world_seed"].agg(["nunique", "first"])
    assert (seeds["nunique"] == 1).all() and seeds["first"].is_unique
    assert (runs.groupby(["policy", "training_seed", "threshold_index"]).size() == BUDGET.claim_users).all()
    assert runs["strategy"].between(0, 6).all()
    assert (runs.loc[runs["policy"] == "raw", "strategy"] == 0).all()
    assert (runs.loc[runs["policy"] == "empirical", "strategy"] == 6).all()
    table = result["claims"].set_index(["numerator", "baseline"])
    row = table.loc[("irl", "empirical")]
    irl, emp = runs[runs["policy"] == "irl"], runs[runs["policy"] == "empirical"]
    assert row["successes"] == irl["success"].sum() and row["baseline_successes"] == emp["success"].sum()
    assert (table["p_holm"] >= table["p"]).all()
    assert {"model_ratio", "model_low", "model_high"} <= set(table.columns)
    finite = table.dropna(subset=["model_low"])
    assert (finite["model_low"] <= finite["model_high"]).all()
    assert table.loc[("irl", "raw"), "paper"] == 6.3 and table.loc[("irl", "empirical"), "paper"] == 2.1


def test_resources_follow_the_trace(tiny_scenario):
    scenario = pw.cell_scenario(load_scenario(tiny_scenario), Path(ROOT / "sim" / "data" / "prompts.yaml"), 8.0, 2,
                                "raw", {}, 3)
    users, images = pw.run_cell(scenario, seed=1)
    res = pw.resources_per_image(images, scenario)
    assert len(res) == len(images) == users["images"].sum()
    assert np.allclose(res["energy_j"], images["power_w"] * images["transmission_time_s"])
    assert np.allclose(res["bandwidth_mhz_s"], 10.0 * images["transmission_time_s"])  # 10 MHz
    assert np.allclose(res["gpu_gib_s"], 4.0 * images["generation_time_s"])
    assert (res["latency_s"] >= res["generation_s"]).all()
    table = pr.resources_table(
        pd.DataFrame({"policy": ["raw"], "threshold": [8.0], "n_images": [1], "images_per_user": [2.5]}),
        res.assign(policy="raw", threshold=8.0, n_images=1))
    assert table.loc[0, "fee_per_user"] == pytest.approx(2.5 * res["fee"].mean())


def test_fitted_normal_table_pools_first_round_scores_per_policy():
    cells = pd.DataFrame({"policy": ["raw", "raw"], "threshold": [7.5, 8.5], "n_images": [1, 1],
                          "first_round_image_scores": [[6.0, 7.0, 8.0], [7.0, 9.0]]})
    fitted = pr.fitted_normal_table(cells)
    assert set(fitted["images_fitted"]) == {5}
    row = fitted[(fitted["threshold"] == 8.5)].iloc[0]
    assert row["p_image"] == pytest.approx(pw.fitted_normal_rounds([6.0, 7.0, 8.0, 7.0, 9.0], 8.5, 1)["p_image"])


def test_report_puts_both_parts_and_the_claims_together(reproduced, tmp_path):
    out, _ = reproduced
    report = write_report(out.parent, ["python -m sim paper --quick"])
    text = report.read_text()
    assert "## Claims" in text and "| claim | paper | ours (95% CI) | verdict |" in text
    assert "6.3x" in text and "2.1x" in text and "Fig. 12" in text
    assert "python -m sim paper --quick" in text
    assert "### Where and why ours differ (Figs. 11-13)" in text and "agrees with the quality model's" in text
    ceiling = pd.read_csv(out / "learnability.csv").set_index("policy")
    assert ceiling.loc["optimum", "agreement"] == 1.0 and ceiling.loc["optimum", "held_out"] == BUDGET.held_out
    assert "**What the learners can learn.**" in text
    assert f"agrees with the optimum on {ceiling.loc['classifier (features)', 'agreement']:.2f} of the held-out" in text
    empty = write_report(tmp_path, ["python -m sim paper"]).read_text()
    assert "no part has run yet" in empty
