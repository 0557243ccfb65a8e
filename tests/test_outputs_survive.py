"""Outputs that survive: no silent overwrite, unique directories, failed runs marked, compare resumes,
SIGTERM stops like Ctrl-C without orphaned workers, and a run whose assessments all failed says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sim.config import load_scenario
from sim.io import unique_dir
from sim.world.compare import compare, make_arms
from sim.world.runner import default_run_dir, run_scenario
from sim.world.simulation import World

ROOT = Path(__file__).resolve().parents[1]
THREE = ROOT / "scenarios" / "three_users.yaml"


def _cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env=env)


def test_a_finished_run_is_not_overwritten_without_asking(tmp_path):
    out = tmp_path / "run"
    assert _cli("run", str(THREE), "--quiet", "--out", str(out)).returncode == 0
    before = (out / "summary.json").read_text()
    again = _cli("run", str(THREE), "--quiet", "--out", str(out), "--seed", "5")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "--overwrite" in again.stderr
    assert (out / "summary.json").read_text() == before
    forced = _cli("run", str(THREE), "--quiet", "--out", str(out), "--seed", "5", "--overwrite")
    assert forced.returncode == 0 and json.loads((out / "run_info.json").read_text())["seed"] == 5


def test_default_run_directories_never_collide(tmp_path):
    scenario = load_scenario(THREE)
    made = {default_run_dir(scenario, 0, root=tmp_path) for _ in range(4)}  # within the same second
    assert len(made) == 4 and all(p.is_dir() for p in made)
    assert unique_dir(tmp_path / "x") != unique_dir(tmp_path / "x")


def test_a_failed_run_says_so_in_its_directory(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(World, "run", broken)
    with pytest.raises(RuntimeError):
        run_scenario(load_scenario(THREE), out=tmp_path, quiet=True)
    failed = json.loads((tmp_path / "FAILED.json").read_text())
    assert failed["error"] == "RuntimeError" and "caught fire" in failed["message"]
    assert not (tmp_path / "summary.json").exists()


def test_compare_resumes_and_refuses_another_scenarios_directory(tmp_path, capsys):
    scenario = load_scenario(THREE)
    arms = make_arms(scenario, ["static", "random"], None)
    out, first = compare(scenario, arms, [0, 1], out=tmp_path, workers=1, quiet=True)
    (tmp_path / "runs" / "random-seed1.json").unlink()
    (tmp_path / "runs.csv").unlink()
    _, resumed = compare(scenario, arms, [0, 1], out=tmp_path, workers=1, quiet=False)
    assert "3 of 4 runs already done" in capsys.readouterr().err
    pd.testing.assert_frame_equal(resumed, first)
    done = _cli("compare", str(ROOT / "scenarios" / "poisson_100.yaml"), "--seeds", "1", "--out", str(tmp_path))
    assert done.returncode == 2 and "another scenario" in done.stderr


def _children_of_out(out: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in ps if str(out) in line and "ps -eo" not in line]


def test_sigterm_stops_compare_like_ctrl_c_without_orphans_and_it_resumes(tmp_path):
    out = tmp_path / "cmp"
    args = [sys.executable, "-m", "sim", "compare", str(ROOT / "scenarios" / "poisson_100.yaml"), "--agents",
            "static,random", "--seeds", "4", "--workers", "2", "--quiet", "--out", str(out)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((out / "runs").glob("*.json")) if (out / "runs").exists() else True:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted; finished runs are kept in" in err and "Traceback" not in err
    time.sleep(1.0)
    assert _children_of_out(out) == []  # no worker left running
    done_before = len(list((out / "runs").glob("*.json")))
    assert 1 <= done_before < 8
    finished = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs["seed"]) == set(range(4))


def test_a_run_whose_every_assessment_failed_exits_3_with_a_warning(tmp_path):
    parts = tmp_path / "my_parts"
    parts.mkdir()
    (parts / "__init__.py").write_text("")
    (parts / "down.py").write_text(
        "from sim.assessment.base import Assessment\n\n\n"
        "class DownAssessor:\n"
        "    name = 'down'\n\n"
        "    def __init__(self, scenario, quality):\n"
        "        pass\n\n"
        "    def assess(self, sent, received, prompt, user_id=None):\n"
        "        return Assessment(score=0.0, decodable=True, damage=0.0, detail='endpoint down', failed=True,\n"
        "                          assessor='down')\n"
    )
    (tmp_path / "down.yaml").write_text(
        "name: down_demo\narrivals: {process: batch, n_users: 2}\ngenerator: {image_size: 32}\n"
        "service: {max_rounds: 1}\nassessor: {backend: 'my_parts.down:DownAssessor'}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = _cli("run", "down.yaml", "--quiet", "--out", "out", cwd=tmp_path, env=env)
    assert done.returncode == 3, done.stderr
    assert "warning: every assessment (" in done.stderr
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["warnings"] and "Warning" in (tmp_path / "out" / "report.md").read_text()
