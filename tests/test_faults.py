"""Faults as scenario features: timelines, the rules of what a fault loses, the world's policies and books."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.config import ScenarioError, load_scenario, parse_scenario
from sim.model import service
from sim.model.faults import FaultTimeline, gpu_schedule, image_losses
from sim.world.records import trace_frame
from sim.world.simulation import World

ROOT = Path(__file__).resolve().parents[1]

# -- timelines -------------------------------------------------------------------------------------


def test_scheduled_windows_merge_and_answer_queries():
    tl = FaultTimeline([(10.0, 20.0), (15.0, 30.0), (30.0, 35.0), (50.0, 60.0)])
    assert tl.windows(math.inf) == [(10.0, 35.0, False), (50.0, 60.0, False)]  # overlapping and touching merge
    assert not tl.is_down(9.99) and tl.is_down(10.0) and tl.is_down(34.9) and not tl.is_down(35.0)
    assert tl.next_down_s(0.0) == 10.0 and tl.next_down_s(12.0) == 12.0 and tl.next_down_s(40.0) == 50.0
    assert tl.next_down_s(61.0) == math.inf and tl.window_after(61.0) is None
    assert tl.up_at_s(12.0) == 35.0 and tl.up_at_s(40.0) == 40.0
    assert tl.overlaps(36.0, 50.0) and not tl.overlaps(36.0, 49.9) and tl.overlaps(0.0, 10.0)


@pytest.mark.parametrize("bad", [[(5.0, 5.0)], [(-1.0, 2.0)], [(0.0, math.inf)], [(3.0, 1.0)]])
def test_a_window_must_be_finite_and_forward(bad):
    with pytest.raises(ValueError, match="start < end"):
        FaultTimeline(bad)


def test_random_outages_have_the_asked_means_and_do_not_depend_on_the_order_of_queries():
    def timeline():
        return FaultTimeline([], mtbf_s=100.0, mttr_s=10.0, rng=np.random.default_rng(7))

    far_first = timeline()
    far_first.window_after(50_000.0)
    near = far_first.window_after(300.0)
    in_order = timeline()
    assert in_order.window_after(300.0) == near
    windows = in_order.windows(200_000.0)
    assert windows == far_first.windows(200_000.0)
    starts = np.array([w[0] for w in windows])
    ends = np.array([w[1] for w in windows])
    assert np.all(starts[1:] > ends[:-1])  # disjoint and ordered
    assert all(w[2] for w in windows)  # all random
    down = (ends - starts).mean()
    up = (starts[1:] - ends[:-1]).mean()
    assert len(windows) > 1500
    assert 9.0 < down < 11.5 and 90.0 < up < 110.0  # exponential means (windows that touch merge: down a bit longer)


def test_random_and_scheduled_windows_merge_and_keep_their_cause():
    tl = FaultTimeline([(0.0, 5.0)], mtbf_s=1e6, mttr_s=1.0, rng=np.random.default_rng(0))
    assert tl.window_after(0.0) == (0.0, 5.0, False)
    assert tl.next_down_s(10.0) > 10.0


# -- the rules -------------------------------------------------------------------------------------


def test_gpu_schedule_without_failures_is_the_fifo_queue():
    n = np.array([3, 0, 5, 2])
    gpus = [FaultTimeline(), FaultTimeline(), FaultTimeline()]
    ends, lost = gpu_schedule(int(n.sum()), 100.0, 2.0, gpus)
    done = service.image_done_times(n, 3, 2.0)
    first = np.cumsum(n) - n
    expected = np.concatenate([done[i, :k] for i, k in enumerate(n)])
    assert not lost.any()
    np.testing.assert_allclose(ends - 100.0, expected)
    assert (first >= 0).all()


def test_a_failing_gpu_loses_its_image_and_the_queue_goes_on_without_it():
    # one GPU, down on [3, 10): image 0 ends at 2, image 1 (started at 2) is lost at 3, image 2 starts at 10
    ends, lost = gpu_schedule(3, 0.0, 2.0, [FaultTimeline([(3.0, 10.0)])])
    assert ends.tolist() == [2.0, 3.0, 12.0] and lost.tolist() == [False, True, False]
    # two GPUs, GPU 0 down from the start: everything runs on GPU 1
    ends, lost = gpu_schedule(3, 0.0, 1.0, [FaultTimeline([(0.0, 100.0)]), FaultTimeline()])
    assert ends.tolist() == [1.0, 2.0, 3.0] and not lost.any()


def test_the_first_fault_to_strike_an_image_loses_it():
    done = np.array([[1.0, 2.0, 3.0, 4.0]])
    arrival = done + 0.5
    used = np.array([[True, True, True, False]])
    gpu_lost = np.array([[False, True, False, False]])
    reason, end = image_losses(10.0, done, arrival, used, gpu_lost, masp=FaultTimeline([(13.2, 20.0)]),
                               links=FaultTimeline([(11.0, 11.2)]))
    # image 0 sent over [11, 11.5]: blocked; image 1: its GPU failed at 2; image 2 not received by 13.2: MASP outage
    assert reason[0].tolist() == ["link_blockage", "gpu_failure", "masp_outage", ""]
    assert end[0, :3].tolist() == pytest.approx([1.5, 2.0, 3.2])


# -- the world ----------------------------------------------------------------------------------------

BASE = {
    "name": "faulty",
    "arrivals": {"process": "poisson", "n_users": 40, "rate_per_s": 0.4},
    "masps": [{"name": "a", "gpus": 2, "position_m": [0.0, 50.0]}, {"name": "b", "gpus": 2, "position_m": [0.0, -50.0]}],
    "service": {"max_rounds": 3},
    "provisioning_agent": {"name": "static", "params": {"n_images": 3}},
}

EVERY_FAULT = {
    "masp_outages": [{"masp": "a", "start_s": 20.0, "end_s": 60.0}],
    "masp_failures": {"mtbf_s": 200.0, "mttr_s": 10.0},
    "gpu_outages": [{"masp": "b", "gpu": 0, "start_s": 10.0, "end_s": 40.0}],
    "gpu_failures": {"mtbf_s": 60.0, "mttr_s": 5.0},
    "link_blockages": [{"masp": "b", "start_s": 30.0, "end_s": 45.0}],
    "link_failures": {"mtbf_s": 80.0, "mttr_s": 4.0},
    "assessor_outages": [{"start_s": 70.0, "end_s": 90.0}],
    "assessor_failure_probability": 0.1,
}


def scenario(delivery="statistical", faults=None, **extra):
    data = {**BASE, "channel": {"delivery": delivery}, "faults": faults if faults is not None else EVERY_FAULT,
            **extra}
    return parse_scenario(data)


def test_no_faults_runs_exactly_as_before():
    plain = parse_scenario({**BASE, "channel": {"delivery": "statistical"}})
    quiet = scenario(faults={"on_masp_down": "give_up", "assessor_failure_probability": 0.0})
    assert not quiet.faults.any
    a, b = World(plain).run(), World(quiet).run()
    assert a.summary == b.summary and a.images == b.images and not b.faults
    assert a.summary["lost_images"] == 0 and a.conservation["holds"]


@pytest.mark.parametrize("delivery", ["statistical", "bytes"])
@pytest.mark.parametrize("policy", ["wait", "reassociate", "give_up"])
def test_every_fault_kind_under_every_policy_keeps_the_books(delivery, policy):
    result = World(scenario(delivery, {**EVERY_FAULT, "on_masp_down": policy})).run()
    books = result.conservation
    assert books["holds"], books
    assert books["users_arrived"] == 40 == books["users_served"] + books["users_out_of_rounds"] + books["users_gave_up"]
    assert books["images_in_flight"] == 0 and books["users_in_service"] == 0
    assert set(books["images_lost"]) == {"masp_outage", "gpu_failure", "link_blockage"}
    assert result.summary["lost_images"] == sum(books["images_lost"].values())
    lost = pd.Series([im.lost for im in result.images])
    assert lost[lost != ""].value_counts().to_dict() == books["images_lost"]
    users = pd.Series([u.outcome for u in result.users])
    assert (users == "masp_down").sum() == books["users_gave_up"]
    assert (books["users_gave_up"] > 0) == (policy == "give_up")
    downs = [f for f in result.faults if f.state == "down"]
    assert {f.fault for f in downs} == {"masp_outage", "gpu_failure", "link_blockage", "assessor_outage"}
    assert {f.cause for f in downs} == {"scheduled", "random"}
    if policy == "reassociate":
        assert sum(f.users_moved for f in downs) + sum(u.masp == "b" for u in result.users) > 0
    if policy == "give_up":
        assert sum(f.users_gave_up for f in downs) <= books["users_gave_up"]
    # a lost image scores nothing and has no BER; images of the assessor's outage were not scored
    for im in result.images:
        if im.lost:
            assert im.received_score == 0 and not im.decodable and math.isnan(im.ber)
        if 70.0 <= im.t_received_s < 90.0 and im.decodable:
            assert im.assessment_failed and im.received_score == 0 and "assessor outage" in im.assessment_detail
    flaky = [im for im in result.images if "probability" in im.assessment_detail]
    assert flaky and result.summary["assessment_failures"] >= len(flaky)


@pytest.mark.parametrize("delivery", ["statistical", "bytes"])
def test_nothing_is_received_from_a_masp_while_it_is_down(delivery):
    faults = {"masp_outages": [{"masp": "a", "start_s": 15.0, "end_s": 50.0}], "on_masp_down": "wait"}
    result = World(scenario(delivery, faults)).run()
    at_a = [im for im in result.images if im.masp == "a"]
    received = [im for im in at_a if not im.lost]
    assert received and not any(15.0 <= im.t_received_s < 50.0 for im in received)
    assert not any(15.0 <= im.t_generation_start_s < 50.0 for im in received)
    lost = [im for im in at_a if im.lost]
    assert lost and all(im.lost == "masp_outage" and im.t_received_s == 15.0 for im in lost)
    rounds = [r for r in result.rounds if r.masp == "a"]
    assert not any(15.0 <= r.t_decision_s < 50.0 for r in rounds)  # no epoch starts while it is down


@pytest.mark.parametrize("delivery", ["statistical", "bytes"])
def test_no_image_crosses_a_blocked_link(delivery):
    faults = {"link_blockages": [{"start_s": 20.0, "end_s": 40.0}]}
    result = World(scenario(delivery, faults)).run()
    for im in result.images:
        sent = (im.t_generation_end_s, im.t_generation_end_s + im.transmission_time_s)
        crosses = sent[0] <= 40.0 and sent[1] >= 20.0
        assert (im.lost == "link_blockage") == crosses


def test_a_horizon_leaves_users_and_images_counted_where_they_are():
    sc = scenario("bytes", {**EVERY_FAULT, "on_masp_down": "wait"}, service={"max_rounds": 3, "horizon_s": 45.0})
    world = World(sc)
    books = world.run().conservation
    assert books["holds"], books
    assert books["users_in_service"] > 0
    assert books["users_arrived"] > books["users_served"] + books["users_out_of_rounds"]


def test_fault_rows_are_in_the_trace_in_memory_and_streamed(tmp_path):
    from sim.world.streaming import streamed

    sc = scenario("statistical", {**EVERY_FAULT, "on_masp_down": "wait"})
    memory = World(sc).run()
    trace = trace_frame(memory.images, memory.rounds, memory.faults)
    faults = trace[trace["record"] == "fault"]
    assert len(faults) == len(memory.faults) > 0
    assert faults["t_s"].is_monotonic_increasing
    assert set(faults["state"]) == {"down", "up"}
    world = World(sc)
    with streamed(world, tmp_path):
        world.run()
    streamed_trace = pd.read_parquet(tmp_path / "trace.parquet")
    got = streamed_trace[streamed_trace["record"] == "fault"][["t_s", "fault", "target", "state", "cause"]]
    want = faults[["t_s", "fault", "target", "state", "cause"]]
    pd.testing.assert_frame_equal(got.sort_values(["t_s", "target", "state"]).reset_index(drop=True),
                                  want.sort_values(["t_s", "target", "state"]).reset_index(drop=True),
                                  check_dtype=False)


def test_a_sharded_run_with_faults_equals_one_process():
    from sim.world.sharding import run_sharded, sharding_problems

    sc = scenario("statistical", {**EVERY_FAULT, "on_masp_down": "give_up"})
    one = World(sc).run()
    two = run_sharded(sc, shards=2, executor="local")
    assert two.summary == one.summary
    assert two.conservation == one.conservation
    # every fault record, also those after a shard's own last user left (added from the same timelines)
    key = lambda f: (f.t_s, f.target, f.state)  # noqa: E731
    assert sorted(two.faults, key=key) == sorted(one.faults, key=key) and len(one.faults) > 10
    assert sharding_problems(scenario("statistical", {**EVERY_FAULT, "on_masp_down": "reassociate"}), 2)


def test_a_streamed_sharded_run_with_faults_writes_the_same_trace(tmp_path):
    from sim.world.sharding import run_sharded
    from sim.world.streaming import streamed

    sc = scenario("statistical", {**EVERY_FAULT, "on_masp_down": "wait"})
    world = World(sc)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with streamed(world, tmp_path / "one"):
        world.run()
    run_sharded(sc, shards=2, stream_to=tmp_path / "two", executor="local")
    keys = ["record", "t_s", "user_id", "round_index", "image_index", "target", "state"]
    one = pd.read_parquet(tmp_path / "one" / "trace.parquet").sort_values(keys).reset_index(drop=True)
    two = pd.read_parquet(tmp_path / "two" / "trace.parquet").sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(one, two)
    assert (one["record"] == "fault").sum() > 10


@pytest.mark.parametrize("faults, problem", [
    ({"masp_outages": [{"start_s": 5.0, "end_s": 5.0}]}, "end_s"),
    ({"masp_outages": [{"masp": "c", "start_s": 1.0, "end_s": 5.0}]}, "no MASP named 'c'"),
    ({"gpu_outages": [{"masp": "a", "gpu": 2, "start_s": 1.0, "end_s": 5.0}]}, "GPU 2 does not exist"),
    ({"link_blockages": [{"gpu": 0, "start_s": 1.0, "end_s": 5.0}]}, "only gpu_outages"),
    ({"assessor_outages": [{"masp": "a", "start_s": 1.0, "end_s": 5.0}]}, "takes no masp"),
    ({"masp_failures": {"mtbf_s": 0.0, "mttr_s": 5.0}}, "greater than 0"),
    ({"gpu_failures": {"mtbf_s": 10.0}}, "required key"),
    ({"assessor_failure_probability": 1.0}, "less than 1"),
    ({"on_masp_down": "retry"}, "on_masp_down"),
])
def test_bad_fault_sections_are_one_line_each(faults, problem):
    with pytest.raises(ScenarioError) as err:
        scenario(faults=faults)
    assert any(problem in line for line in err.value.problems), err.value.problems


def test_the_cli_prints_and_saves_the_books(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "sim", "run", str(ROOT / "scenarios" / "faults.yaml"),
                           "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conservation"]["holds"] is True and summary["lost_images"] > 0
    report = (out / "report.md").read_text()
    assert "conservation holds" in report and "## Faults" in report
    trace = pd.read_parquet(out / "trace.parquet")
    assert {"masp_outage", "gpu_failure", "link_blockage", "assessor_outage"} <= set(trace["fault"].dropna())
    assert load_scenario(ROOT / "scenarios" / "faults.yaml").faults.any


def test_the_soak_script_keeps_the_books_and_reports_memory(tmp_path, load_script):
    figures = load_script("soak_faults").soak(ROOT / "scenarios" / "poisson_100k.yaml", 1500, tmp_path)
    assert figures["conservation"]["holds"] and figures["users"] == 1500
    assert figures["fault_events"] > 0 and figures["assessment_failures"] > 0
    assert set(figures["lost_images"]) <= {"masp_outage", "gpu_failure", "link_blockage"} and figures["lost_images"]
    assert figures["rss_mib_by_users_done"][-1][0] == 1500 and figures["peak_rss_mib"] > 0
    assert json.loads((tmp_path / "soak.json").read_text())["conservation"]["holds"]
    assert len(pd.read_parquet(tmp_path / "users.parquet")) == 1500
