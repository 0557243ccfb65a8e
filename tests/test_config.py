"""Scenario parsing and `python -m sim validate`: one line per problem, key path named, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sim.cli import main
from sim.config import ScenarioError, load_scenario, scenario_to_yaml

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_validate(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value.problems


def test_unknown_key_named_with_its_path(tmp_path):
    path = _write(tmp_path, "name: x\nchannel:\n  nakagami_mm: 2\n")
    assert _problems(path) == ["channel.nakagami_mm: unknown key (check its spelling and nesting)"]


def test_every_problem_reported_once(tmp_path):
    path = _write(
        tmp_path,
        "name: x\nmasps:\n  - p_total_w: -1\n    gpus: 0\nchannel:\n  nakagami_m: 0.2\nusers:\n  threshold: {low: 9, high: 8}\n",
    )
    problems = _problems(path)
    assert any(p.startswith("masps[0].p_total_w:") for p in problems)
    assert any(p.startswith("masps[0].gpus:") for p in problems)
    assert any(p.startswith("channel.nakagami_m:") for p in problems)
    assert any(p.startswith("users.threshold") and "must not exceed" in p for p in problems)
    assert len(problems) == 4


def test_missing_name(tmp_path):
    assert _problems(_write(tmp_path, "seed: 3\n")) == ["name: required key is missing"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "the file is empty"),
        ("name: [unclosed\n", "(yaml): line"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_broken_files(tmp_path, text, expected):
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 1 and expected in problems[0]


def test_missing_file(tmp_path):
    assert _problems(tmp_path / "nope.yaml") == ["(file): no such file"]


def test_resolved_yaml_round_trips(tmp_path):
    scenario = load_scenario(ROOT / "scenarios" / "three_users.yaml")
    again = _write(tmp_path, scenario_to_yaml(scenario))
    assert load_scenario(again) == scenario


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("text", ["", "name: [x\n", "name: x\nqoe: {eta_q: -1}\n"])
def test_cli_validate_bad_input_exits_2_without_traceback(tmp_path, text):
    path = _write(tmp_path, text)
    proc = _cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith(str(path)) for line in lines)


def test_cli_run_unknown_agent_exits_2(tmp_path):
    path = _write(tmp_path, "name: x\nprovisioning_agent: {name: nope}\n")
    proc = _cli("run", str(path), "--quiet", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown provisioning agent 'nope'; known:" in proc.stderr


def test_cli_run_bad_agent_parameter_exits_2(tmp_path):
    path = _write(tmp_path, "name: x\nprovisioning_agent: {name: static, params: {n_image: 4}}\n")
    proc = _cli("run", str(path), "--quiet", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "does not take n_image; it takes n_images" in proc.stderr


def test_cli_missing_file_exits_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'missing.yaml'}: (file): no such file"


def test_defaults_are_the_paper_setting():
    scenario = load_scenario(ROOT / "scenarios" / "three_users.yaml")
    assert scenario.users.thresholds == [7.6, 8.2, 8.5]
    assert scenario.provisioning_agent.name == "static"
    assert yaml.safe_load(scenario_to_yaml(scenario))["provisioning_agent"]["params"] == {"n_images": 4}
