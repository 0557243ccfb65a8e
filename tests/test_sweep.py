"""Parameter sweeps and the executors that run them: resumable, atomic, identical results everywhere."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.config import ScenarioError, load_scenario
import sim.executors as ex
from sim.executors import ExecutorError, check_executor, run_tasks
from sim.world.compare import make_arms
from sim.world.sweep import cell_id, cells, parse_grid, sweep

ROOT = Path(__file__).resolve().parents[1]
THREE = ROOT / "scenarios" / "three_users.yaml"
GRID = ["masps.*.p_total_w=0.5,1.0", "service.max_rounds=2,3"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_grid_parsing_and_cells_are_validated_like_scenarios():
    grid = parse_grid(["arrivals.rate_per_s=0.05,0.1", "prompt_agent.name=raw,empirical"])
    assert grid == {"arrivals.rate_per_s": [0.05, 0.1], "prompt_agent.name": ["raw", "empirical"]}
    for bad, message in ((["p_total_w"], "expected KEY=V1,V2"), (["a=1", "a=2"], "given twice"),
                         (["a=1,1"], "repeated value"), (["a=[1],2"], "scalars")):
        with pytest.raises(ScenarioError, match=message):
            parse_grid(bad)
    scenario = load_scenario(THREE)
    found = cells(scenario, parse_grid(["masps.0.p_total_w=0.5,2", "service.max_rounds=1,4"]))
    assert len(found) == 4
    assert [(s.masps[0].p_total_w, s.service.max_rounds) for _, s in found] == [(0.5, 1), (0.5, 4), (2.0, 1), (2.0, 4)]
    with pytest.raises(ScenarioError) as err:
        cells(scenario, parse_grid(["service.max_rounds=0"]))
    assert "service.max_rounds" in err.value.problems[0]
    with pytest.raises(ScenarioError, match="not an index"):
        cells(scenario, parse_grid(["masps.3.gpus=2"]))
    with pytest.raises(ScenarioError) as err:
        cells(scenario, parse_grid(["service.no_such_key=1"]))
    assert "no_such_key" in " ".join(err.value.problems)
    assert cell_id({"a.b": 1}) != cell_id({"a.b": 2}) and "/" not in cell_id({"x": "a/b"})


def test_sweep_runs_every_cell_agent_and_seed_and_resumes(tmp_path):
    scenario = load_scenario(THREE)
    arms = make_arms(scenario, ["static", "random"], None)
    results = sweep(scenario, parse_grid(GRID), arms, [0, 1], tmp_path, workers=1, quiet=True)
    assert len(results) == 4 * 2 * 2
    counts = results.groupby(["masps.*.p_total_w", "service.max_rounds", "agent"])["seed"].apply(sorted)
    assert all(v == [0, 1] for v in counts)
    assert (results["mean_rounds"] <= results["service.max_rounds"]).all()
    saved = pd.read_parquet(tmp_path / "results.parquet")
    pd.testing.assert_frame_equal(saved, results)
    report = (tmp_path / "report.md").read_text()
    for parameter in ("masps.*.p_total_w", "service.max_rounds"):
        assert f"## {parameter}" in report
    for line in report.splitlines():
        if line.startswith("!["):
            assert (tmp_path / line.split("(")[1].rstrip(")")).exists()
    # an interrupted sweep: one run's file is gone; the rerun runs that one only, with the same result
    runs = sorted((tmp_path / "runs").rglob("*.json"))
    assert len(runs) == 16 and not list((tmp_path / "runs").rglob("*.tmp"))
    runs[3].unlink()
    logged = []
    again = sweep(scenario, parse_grid(GRID), arms, [0, 1], tmp_path, workers=1, quiet=False, log=logged.append)
    assert logged == ["15 of 16 runs already done: skipped"]
    pd.testing.assert_frame_equal(again, results)


def test_run_tasks_keeps_task_order_locally():
    tasks = [(i, 10 * i) for i in range(7)]
    assert run_tasks(operator.add, tasks, "local", workers=2) == [11 * i for i in range(7)]
    assert run_tasks(operator.add, tasks, "local", workers=1) == [11 * i for i in range(7)]
    with pytest.raises(ExecutorError, match="one of local, dask, ray"):
        check_executor("spark")
    with pytest.raises(ExecutorError, match="--address is for"):
        check_executor("local", "tcp://x:1")


@pytest.mark.parametrize("executor", ["dask", "ray"])
def test_a_sweep_gives_the_same_bytes_on_every_executor(tmp_path, executor):
    pytest.importorskip("distributed" if executor == "dask" else "ray")
    common = ["--grid", "masps.*.p_total_w=0.5,1.0", "--agents", "static,random", "--seeds", "2", "--workers", "2",
              "--quiet"]
    local = _cli("sweep", str(THREE), *common, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    other = _cli("sweep", str(THREE), *common, "--out", str(tmp_path / executor), "--executor", executor)
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "local" / "results.csv").read_bytes() == (tmp_path / executor / "results.csv").read_bytes()


def test_sweep_cli_refuses_bad_input_in_one_line(tmp_path):
    proc = _cli("sweep", str(THREE), "--grid", "masps.*.p_total_w=-1", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "p_total_w" in proc.stderr
    proc = _cli("sweep", str(THREE), "--out", str(tmp_path / "y"))
    assert proc.returncode == 2 and "--grid" in proc.stderr
    proc = _cli("sweep", str(THREE), "--grid", "qoe.eta_q=1", "--workers", "0")
    assert proc.returncode == 2 and "must be >= 1" in proc.stderr


def test_using_sets_the_executor_of_calls_that_name_none():
    pytest.importorskip("distributed")

    seen = []
    original = ex._run_dask

    def spy(fn, tasks, workers, address, on_done):
        seen.append((len(tasks), workers, address))
        return original(fn, tasks, workers, address, on_done)

    ex._run_dask = spy
    try:
        with ex.using("dask"):
            assert run_tasks(operator.mul, [(2, 3), (4, 5)], workers=2) == [6, 20]
        assert run_tasks(operator.mul, [(2, 3)], workers=1) == [6]  # local again outside the block
    finally:
        ex._run_dask = original
    assert seen == [(2, 2, None)]
    with pytest.raises(ExecutorError):
        with ex.using("nope"):
            pass


def _worker_environ() -> tuple[str | None, str | None]:
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OPENBLAS_NUM_THREADS")


def test_local_dask_workers_start_without_dasks_malloc_trim_even_after_a_default_cluster():
    pytest.importorskip("distributed")
    from distributed import Client

    from sim.executors import local_dask_cluster

    for environ, expected in ((None, ("65536", "1")), (ex.DASK_WORKER_ENVIRON, (None, "1"))):
        cluster = local_dask_cluster(1, environ)  # Dask's default first: it leaves its value in os.environ
        client = Client(cluster)
        try:
            assert list(client.run(_worker_environ).values()) == [expected]
        finally:
            client.close()
            cluster.close()


@pytest.mark.parametrize("torch_first", [False, True])
def test_workers_pin_one_thread_without_importing_torch_for_it(torch_first):
    """A worker's pin leaves torch unimported (importing it cost every worker over a second); torch imported
    after it, or before it, runs on one thread."""
    pytest.importorskip("torch")
    code = (
        "import sys\n"
        + ("import torch\n" if torch_first else "")
        + "from sim.executors import pin_threads\n"
        "pin_threads()\n"
        "loaded = 'torch' in sys.modules\n"
        "import os, torch\n"
        "print(loaded, torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ex.THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == [str(torch_first), "1", "1"], out.stderr
