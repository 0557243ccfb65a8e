"""The real CLI: `run` writes its results directory; `compare` runs agents on the same seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from sim.world.records import SUMMARY_METRICS

ROOT = Path(__file__).resolve().parents[1]
THREE = ROOT / "scenarios" / "three_users.yaml"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_run_writes_results_and_is_reproducible(tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = _cli("run", str(THREE), "--out", str(out), "--seed", "11", "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(out)
        outs.append(out)
    for name in ("scenario.yaml", "trace.parquet", "users.parquet", "summary.json", "report.md", "run_info.json"):
        assert (outs[0] / name).exists(), name
    summary = json.loads((outs[0] / "summary.json").read_text())
    assert list(summary) == [*SUMMARY_METRICS, "conservation"]
    assert summary["conservation"]["holds"] is True
    assert summary["conservation"]["users_arrived"] == summary["users"]
    assert summary == json.loads((outs[1] / "summary.json").read_text())
    trace = pd.read_parquet(outs[0] / "trace.parquet")
    pd.testing.assert_frame_equal(trace, pd.read_parquet(outs[1] / "trace.parquet"))
    assert set(trace.record) == {"image", "round"}
    for col in ("t_s", "n_images", "power_w", "snr_db", "ber", "bits_flipped", "generation_score", "received_score", "qoe", "utility"):
        assert col in trace.columns, col
    assert "seed: 11" in (outs[0] / "scenario.yaml").read_text()
    report = (outs[0] / "report.md").read_text()
    assert "## Summary" in report and "![" in report
    for line in report.splitlines():
        if line.startswith("!["):
            assert (outs[0] / line.split("(")[1].rstrip(")")).exists()


def test_compare_same_seeds_for_every_agent(tmp_path):
    out = tmp_path / "cmp"
    proc = _cli("compare", str(THREE), "--agents", "static,random", "--seeds", "3", "--out", str(out), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6
    assert runs.groupby("agent")["seed"].apply(sorted).to_dict() == {"static": [0, 1, 2], "random": [0, 1, 2]}
    assert set(SUMMARY_METRICS) <= set(runs.columns)
    report = (out / "report.md").read_text()
    assert "95%" in report and "Paired differences to `static`" in report and (out / "compare.png").exists()
    # A compare row equals a single run of that agent and seed.
    single = tmp_path / "single"
    assert _cli("run", str(THREE), "--out", str(single), "--seed", "2", "--quiet").returncode == 0
    summary = json.loads((single / "summary.json").read_text())
    row = runs[(runs.agent == "static") & (runs.seed == 2)].iloc[0]
    for key in ("mean_qoe", "mean_utility", "mean_rounds", "served_users"):
        assert abs(row[key] - summary[key]) < 1e-9, key


def test_compare_unknown_agent_is_one_line(tmp_path):
    proc = _cli("compare", str(THREE), "--agents", "static,nope", "--seeds", "2", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown provisioning agent 'nope'" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_paper_and_train_prompt_reject_bad_input_in_one_line(tmp_path):
    proc = _cli("paper", "--jobs", "0", "--out", str(tmp_path / "p"))
    assert proc.returncode == 2 and proc.stderr.strip() == "--jobs: must be >= 1, got 0"
    assert not (tmp_path / "p").exists()
    proc = _cli("train-prompt", str(ROOT / "scenarios" / "paper" / "prompting.yaml"), "--agent", "gail",
                "--steps", "64", "--demo", str(tmp_path / "missing.parquet"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"{tmp_path / 'missing.parquet'}: no such file"
    proc = _cli("run", str(THREE), "--seed", "-1", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr.strip() == "--seed: must be >= 0, got -1"


def test_a_missing_optional_package_names_its_extra():
    from sim.cli import _missing_package_message

    # a worker process's exception arrives pickled, without .name: the message is parsed instead
    message = _missing_package_message(ModuleNotFoundError("No module named 'torch'"))
    assert "'torch'" in message and '.[learn]' in message and "torch==2.13.0" in message
    assert '.[real]' in _missing_package_message(ModuleNotFoundError("x", name="diffusers.pipelines"))
    assert "missing Python package 'nope'" in _missing_package_message(ModuleNotFoundError("No module named 'nope'"))


def test_compare_runs_labelled_agents_with_their_parameters(tmp_path):
    import yaml

    raw = yaml.safe_load(THREE.read_text())
    raw["compare"] = {"provisioning_agents": [{"label": "n2", "name": "static", "params": {"n_images": 2}},
                                              {"label": "n_max", "name": "static", "params": {"n_images": 8}}]}
    path = tmp_path / "labelled.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "cmp"
    # no --agents: the compare section's agents, in its order
    proc = _cli("compare", str(path), "--seeds", "2", "--out", str(out), "--workers", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.agent.unique()) == ["n2", "n_max"] and set(runs.provisioning_agent) == {"static"}
    assert (runs[runs.agent == "n2"].mean_images.to_numpy() < runs[runs.agent == "n_max"].mean_images.to_numpy()).all()
    # labels and registry names mix in --agents; an unknown one names the labels too
    proc = _cli("compare", str(path), "--agents", "n_max,random", "--seeds", "1", "--out", str(tmp_path / "b"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(tmp_path / "b" / "runs.csv").agent) == ["n_max", "random"]
    proc = _cli("compare", str(path), "--agents", "n9", "--seeds", "1", "--out", str(tmp_path / "c"))
    assert proc.returncode == 2 and "n2, n_max" in proc.stderr and proc.stderr.strip().count("\n") == 0
    raw["compare"]["provisioning_agents"][1]["label"] = "n2"
    path.write_text(yaml.safe_dump(raw))
    proc = _cli("validate", str(path))
    assert proc.returncode == 2 and "labels must be unique" in proc.stderr
