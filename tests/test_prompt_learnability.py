"""The supervised ceiling of prompt policies (sim.rl.prompt_learnability) and the study's use of it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sim.backends import build_quality_model  # noqa: E402
from sim.paper.prompting import scenario_with_profile  # noqa: E402
from sim.prompting.prompts import prompt_category  # noqa: E402
from sim.rl.prompt_expert import ModelExpert, scenario_prompts, split_prompts  # noqa: E402
from sim.rl.prompt_learnability import fit_classifier, learnability  # noqa: E402


@pytest.fixture(scope="module")
def ratings():
    scenario = scenario_with_profile("ratings")
    return build_quality_model(scenario), split_prompts(scenario_prompts(scenario), 32, seed=3)


class CategoryExpert:
    """An optimum that the hand-made features fix exactly: one strategy per category."""

    CHOICE = {"animals": 2, "cities": 3, "fantasy": 5, "food": 4, "interiors": 1, "nature": 3, "people": 5,
              "vehicles": 1}

    def action(self, prompt: str, power_w: float = 1.0) -> int:
        return self.CHOICE.get(prompt_category(prompt), 6)


def test_the_features_classifier_learns_an_optimum_that_follows_the_category(ratings):
    quality, split = ratings
    table = learnability(quality, split.train, split.held_out, ("features",), expert=CategoryExpert()).set_index("policy")
    assert table.loc["optimum", "agreement"] == 1.0
    assert table.loc["classifier (features)", "agreement"] == 1.0  # every category appears among 32 stratified prompts
    assert table.loc["classifier (features)", "success"] == pytest.approx(table.loc["optimum", "success"])
    held_choices = [CategoryExpert().action(p) for p in split.held_out]
    assert table.loc["always 6", "agreement"] == pytest.approx(np.mean(np.array(held_choices) == 6))
    assert (table["held_out"] == len(split.held_out)).all()


def test_the_scores_are_the_models_chances_of_the_chosen_strategies(ratings):
    quality, split = ratings
    table = learnability(quality, split.train, split.held_out, ("features",)).set_index("policy")
    expert = ModelExpert(quality)
    expected = np.mean([np.mean(quality.text_known_success(p, expert.action(p), (7.5, 8.0, 8.5))) for p in split.held_out])
    assert table.loc["optimum", "success"] == pytest.approx(expected)
    always6 = np.mean([np.mean(quality.text_known_success(p, 6, (7.5, 8.0, 8.5))) for p in split.held_out])
    assert table.loc["always 6", "success"] == pytest.approx(always6)
    assert table[["agreement", "success"]].stack().between(0, 1).all()
    assert np.isfinite(table.loc["classifier (features)", "C"])


def test_a_classifier_needs_labels_and_falls_back_to_a_constant():
    with pytest.raises(ValueError, match="n >= 4"):
        fit_classifier(np.zeros((3, 2)), np.array([1, 2, 3]))
    predict, c = fit_classifier(np.random.default_rng(0).normal(size=(6, 3)), np.full(6, 5))
    assert np.isnan(c) and predict(np.zeros((2, 3))).tolist() == [5, 5]


def test_the_representation_study_pairs_its_splits(load_script, tmp_path):
    pytest.importorskip("sentence_transformers")
    script = load_script("prompt_representations")
    assert script.main(["--profiles", "ratings", "--splits", "2", "--n-train", "16", "--out", str(tmp_path)]) == 0
    import pandas as pd

    splits = pd.read_csv(tmp_path / "splits.csv")
    summary = pd.read_csv(tmp_path / "summary.csv").set_index(["what", "metric"])
    assert sorted(splits["split"].unique()) == [1, 2] and (splits["held_out"] == 128 - 16).all()
    wide = splits.pivot(index="split", columns="policy", values="agreement")
    diff = (wide["classifier (minilm)"] - wide["classifier (features)"]).mean()
    assert summary.loc[("classifier (minilm) - classifier (features)", "agreement"), "mean"] == pytest.approx(diff)
    assert summary.loc[("optimum", "agreement"), "mean"] == 1.0
