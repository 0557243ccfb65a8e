"""The two delivery modes give the same summary metrics within their confidence intervals (Holm across the table)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.config import parse_scenario
from sim.world.agreement import CASES, METRICS, agreement, paired_agreement, reference_cases
from sim.world.simulation import World
from sim.world.sweep import cells

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    return agreement(reference_cases())


def test_every_case_and_metric_is_compared(table):
    assert len(table) == len(reference_cases()) * len(METRICS)
    assert (table["p_holm"] >= table["p"] - 1e-12).all()


def test_the_modes_agree_on_few_users_many_users_and_a_poor_channel(table):
    shown = table[["case", "metric", "bytes_mean", "statistical_mean", "p", "p_holm"]].to_string()
    assert (table["p_holm"] > 0.05).all(), shown
    # the cases are not degenerate: users are served in the first two, images lost in the third
    poor = table[(table["case"].str.startswith("poor")) & (table["metric"] == "undecodable_rate")].iloc[0]
    assert 0.3 < poor["bytes_mean"] < 0.9
    served = table[(table["metric"] == "single_round_success") & ~table["case"].str.startswith("poor")]
    assert (served["bytes_mean"] > 0).all()


def test_the_comparison_catches_a_wrong_damage_model(tmp_path):
    # the statistical mode with a damage model that loses five times fewer images than the real bytes do
    damage = yaml.safe_load((ROOT / "sim" / "data" / "quality_damage.yaml").read_text())
    damage["formats"]["jpeg"]["undecodable_per_error"] /= 5
    path = tmp_path / "damage.yaml"
    path.write_text(yaml.safe_dump(damage))
    data, seeds = CASES["poor channel (150-220 m, m = 1)"]
    wrong = parse_scenario({**data, "quality": {"damage": str(path)}})
    rows = agreement({"poor, wrong damage": (wrong, list(range(12)))}).set_index("metric")
    assert rows.loc["undecodable_rate", "p_holm"] < 0.05
    assert rows.loc["undecodable_rate", "bytes_mean"] > rows.loc["undecodable_rate", "statistical_mean"] + 0.2


def _with_pictures(scenario, k):
    return cells(scenario, {"generator.surrogate.pictures_per_prompt": [k]})[0][1]


def test_a_few_pictures_per_prompt_leave_the_outcomes_within_their_intervals():
    """The same seeds with a picture per seed and with 2 per prompt (paired: every stream is shared)."""
    data, _ = CASES["poor channel (150-220 m, m = 1)"]
    base = parse_scenario(data, source="poor")
    assert World(_with_pictures(base, 2), seed=0).generator.pictures_per_prompt == 2  # the config reaches it
    table = paired_agreement(base, _with_pictures(base, 2), range(16), workers=1).set_index("metric")
    shown = table.to_string()
    assert (table["p_holm"] > 0.05).all(), shown
    for metric in METRICS:  # each paired interval holds 0
        assert table.loc[metric, "difference_low"] <= 0 <= table.loc[metric, "difference_high"], shown
    # the pictures did change: the damaged images are other images
    assert (table["difference_mean"] != 0).any(), shown


def test_paired_agreement_of_a_scenario_with_itself_is_exactly_zero():
    data, _ = CASES["few users (3, batch)"]
    base = parse_scenario(data, source="few")
    table = paired_agreement(base, base, range(3), workers=1)
    assert (table["difference_mean"] == 0).all() and (table["p"] == 1).all()
    assert (table["base_mean"] == table["variant_mean"]).all()
