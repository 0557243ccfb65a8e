"""Long runs: exact running tallies, records streamed to Parquet, one replication sharded over processes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import load_scenario
from sim.world.records import TRACE_SORT_KEYS, ExactSum, UserTally, summarise, trace_frame
from sim.world.runner import run_scenario
from sim.world.sharding import TableMerger, run_sharded, scan_users, shard_masps, sharding_problems
from sim.world.simulation import World
from sim.world.streaming import TRACE_SCHEMA, USERS_SCHEMA, ChunkFiles, ParquetSink, streamed

ROOT = Path(__file__).resolve().parents[1]


def _scenario(n_users: int = 60, delivery: str = "statistical", **service):
    sc = load_scenario(ROOT / "scenarios" / "poisson_100.yaml")
    return sc.model_copy(update={
        "arrivals": sc.arrivals.model_copy(update={"n_users": n_users}),
        "channel": sc.channel.model_copy(update={"delivery": delivery}),
        "service": sc.service.model_copy(update=service),
    })


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-1e12, max_value=1e12) | st.just(math.nan), max_size=40),
       st.integers(min_value=0, max_value=40))
def test_exact_sum_equals_fsum_added_one_by_one_or_merged(values, cut):
    kept = [v for v in values if v == v]
    whole, left, right = ExactSum(), ExactSum(), ExactSum()
    for v in values:
        whole.add(v)
    for v in values[:cut]:
        left.add(v)
    for v in values[cut:]:
        right.add(v)
    left.merge(right)
    expected = math.fsum(kept) / len(kept) if kept else math.nan
    for total in (whole, left):
        assert total.count == len(kept)
        assert (math.isnan(total.mean) and math.isnan(expected)) or total.mean == expected


def test_user_tally_summary_equals_the_one_from_records():
    result = World(_scenario(40), seed=2).run()
    from_records = summarise(result.users, result.images, result.summary["users"], result.summary["sim_time_s"])
    assert from_records == result.summary  # the world summarises from its tallies, records give the same numbers
    halves = UserTally.of(result.users[:13])
    halves.merge(UserTally.of(result.users[13:]))
    assert summarise(halves, result.images, 40, 1.0)["mean_utility"] == result.summary["mean_utility"]


def test_users_given_as_columns_count_and_stream_as_records_do(tmp_path):
    import dataclasses

    users = World(_scenario(40), seed=2).run().users
    columns = {f.name: [getattr(u, f.name) for u in users[13:]] for f in dataclasses.fields(users[0])}
    from_columns = UserTally.of(users[:13])
    from_columns.add_columns(columns)
    from_records = UserTally.of(users)
    assert (from_columns.departed, from_columns.served, from_columns.outcomes) == \
        (from_records.departed, from_records.served, from_records.outcomes)
    assert {f: t.mean for f, t in from_columns.sums.items()} == {f: t.mean for f, t in from_records.sums.items()}
    sink = ParquetSink(tmp_path, chunk_rows=10)
    for user in users[:13]:  # records, then columns: written in the order given, 10 rows a row group
        sink.add_user(user)
    sink.add_user_columns(columns)
    sink.close()
    table = pq.ParquetFile(tmp_path / "users.parquet")
    assert [table.metadata.row_group(g).num_rows for g in range(table.num_row_groups)] == [10, 10, 10, 10]
    assert table.read().column("user_id").to_pylist() == [u.user_id for u in users]


def test_users_are_drawn_as_they_arrive(monkeypatch):
    world = World(_scenario(50), seed=1)
    assert world.n_users == 50
    assert [u.user_id for u in world.users] == list(range(50))
    first = world.draw_user(7)
    assert (first.prompt, first.threshold) == (world.users[7].prompt, world.users[7].threshold)
    drawn: list[tuple[int, float]] = []
    original = World.draw_user

    def spy(self, u, index=None):
        drawn.append((u, self.env.now))
        return original(self, u, index)

    monkeypatch.setattr(World, "draw_user", spy)
    world = World(_scenario(50), seed=1)
    assert drawn == []  # nobody exists before the run
    world.run()
    assert [u for u, _ in drawn] == list(range(50))  # each user once, in order of arrival
    assert all(now == world._arrival_times[u] for u, now in drawn)  # at the moment it arrives


@pytest.mark.parametrize("delivery", ["statistical", "bytes"])
def test_a_streamed_run_writes_the_same_records_in_chunks(tmp_path, delivery):
    sc = _scenario(30 if delivery == "bytes" else 80, delivery)
    memory = run_scenario(sc, out=tmp_path / "memory", seed=5, quiet=True, stream=False)
    world = World(sc, seed=5)
    sink = ParquetSink(tmp_path, chunk_rows=97)
    world.set_sink(sink)
    streamed = world.run()
    sink.close()
    assert streamed.summary == memory.result.summary
    assert streamed.users == [] and streamed.rounds == [] and streamed.images == []
    trace_file = pq.ParquetFile(tmp_path / "trace.parquet")
    assert trace_file.num_row_groups > 3  # written chunk by chunk
    trace = trace_file.read().to_pandas()
    for _, chunk in trace.groupby(trace.index // 97):
        assert chunk["t_s"].is_monotonic_increasing  # sorted by time within each chunk
    expected = pd.read_parquet(tmp_path / "memory" / "trace.parquet")
    pd.testing.assert_frame_equal(trace.sort_values(list(TRACE_SORT_KEYS), kind="stable").reset_index(drop=True), expected)
    users = pd.read_parquet(tmp_path / "users.parquet").sort_values("user_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(users, pd.read_parquet(tmp_path / "memory" / "users.parquet"))
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_streamed_run_leaves_no_table(tmp_path, monkeypatch):
    sc = _scenario(20)

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(World, "_statistical_epochs", broken)
    with pytest.raises(RuntimeError, match="boom"):
        run_scenario(sc, out=tmp_path, seed=0, quiet=True, stream=True)
    assert not (tmp_path / "trace.parquet").exists() and not list(tmp_path.glob(".*tmp"))


def test_a_failed_sharded_streamed_run_leaves_no_table_and_no_chunk(tmp_path, monkeypatch):
    import multiprocessing

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the shards' processes inherit the patch only when forked")

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(World, "_statistical_epochs", broken)
    with pytest.raises(RuntimeError, match="boom"):
        run_sharded(_scenario(20), seed=0, shards=2, stream_to=tmp_path, executor="local")
    left = [p.name for p in tmp_path.rglob("*")]
    assert left == [], left


@pytest.mark.parametrize("delivery", ["statistical", "bytes"])
def test_a_sharded_run_equals_the_single_process_run(tmp_path, delivery):
    sc = _scenario(60 if delivery == "statistical" else 24, delivery)
    single = World(sc, seed=9).run()
    sharded = run_sharded(sc, seed=9, shards=2, executor="local")
    assert sharded.summary == single.summary  # exact tallies: bit for bit
    assert sharded.users == single.users
    # the same records (compared as tables: a NaN damage is not == itself)
    pd.testing.assert_frame_equal(trace_frame(sharded.images, sharded.rounds), trace_frame(single.images, single.rounds))
    assert len(single.images) > 100
    streamed = run_sharded(sc, seed=9, shards=2, stream_to=tmp_path, executor="local")
    assert streamed.summary == single.summary
    assert not (tmp_path / ".shards").exists()
    assert len(pd.read_parquet(tmp_path / "users.parquet")) == (60 if delivery == "statistical" else 24)


def _rows(schema: pa.Schema, user_ids: list[int]) -> pa.Table:
    columns = [pa.array(user_ids, type=f.type) if f.name == "user_id" else pa.nulls(len(user_ids), f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def test_the_merger_appends_the_shards_chunks_in_turns_whichever_shard_is_ahead(tmp_path):
    dirs = [tmp_path / "shard-0", tmp_path / "shard-1"]
    for d in dirs:
        d.mkdir()
    trace = [ChunkFiles(d, "trace", TRACE_SCHEMA) for d in dirs]
    users = [ChunkFiles(d, "users", USERS_SCHEMA) for d in dirs]
    merger = TableMerger(dirs, tmp_path)
    for i in range(3):  # shard 1 is ahead: all its chunks written before shard 0 wrote one
        trace[1].write_table(_rows(TRACE_SCHEMA, [100 + i, 100 + i]))
    trace[1].publish()
    assert not merger.append_ready()  # chunk 0 of shard 0 has the turn
    trace[0].write_table(_rows(TRACE_SCHEMA, [0]))
    assert merger.append_ready()  # shard 0's chunk 0, then shard 1's
    assert sorted(p.name for p in dirs[1].glob("*.arrow")) == ["trace-000001.arrow", "trace-000002.arrow"]
    trace[0].write_table(_rows(TRACE_SCHEMA, [1]))
    trace[0].publish()  # shard 0 ends after two chunks: shard 1's last one follows its own second
    for k, part in enumerate(users):
        part.write_table(_rows(USERS_SCHEMA, [k]))
        part.publish()
    merger.finish()
    merged = pq.ParquetFile(tmp_path / "trace.parquet")
    groups = [merged.read_row_group(g).column("user_id").to_pylist() for g in range(merged.num_row_groups)]
    assert groups == [[0], [100, 100], [1], [101, 101], [102, 102]]
    assert pq.read_table(tmp_path / "users.parquet").column("user_id").to_pylist() == [0, 1]
    assert not list(tmp_path.rglob("*.arrow")) and not list(tmp_path.glob(".*.tmp"))


def test_the_merger_refuses_to_finish_before_every_shard_published(tmp_path):
    (tmp_path / "shard-0").mkdir()
    merger = TableMerger([tmp_path / "shard-0"], tmp_path)
    ChunkFiles(tmp_path / "shard-0", "trace", TRACE_SCHEMA).write_table(_rows(TRACE_SCHEMA, [0]))
    with pytest.raises(RuntimeError, match="not published"):
        merger.finish()
    merger.abort()
    assert not (tmp_path / "trace.parquet").exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_sharded_run_streams_the_same_bytes_every_time(tmp_path):
    sc = _scenario(150)
    digests = []
    for name in ("one", "two"):
        run_sharded(sc, seed=4, shards=2, stream_to=(tmp_path / name), executor="local")
        digests.append([(tmp_path / name / table).read_bytes() for table in ("trace.parquet", "users.parquet")])
    assert digests[0] == digests[1]
    # one chunk per shard at this size: shard 0's row group first, then shard 1's
    trace = pq.ParquetFile(tmp_path / "one" / "trace.parquet")
    masps = [set(trace.read_row_group(g).column("masp").to_pylist()) for g in range(trace.num_row_groups)]
    assert masps == [set(group) for group in shard_masps(sc, 2)]


def test_a_shard_of_an_unvisited_masp_and_a_horizon(tmp_path):
    sc = _scenario(30, horizon_s=120.0)
    far = sc.masps[1].model_copy(update={"name": "far", "position_m": [5000.0, 5000.0]})
    sc = sc.model_copy(update={"masps": [sc.masps[0], far]})
    single = World(sc, seed=3).run()
    assert single.summary["sim_time_s"] == 120.0
    assert run_sharded(sc, seed=3, shards=2, executor="local").summary == single.summary


def test_sharding_refuses_what_would_change_the_results(tmp_path):
    sc = _scenario(20)
    assert sharding_problems(sc, 2) == []
    assert any("MASP" in p for p in sharding_problems(sc, 3))
    least = _scenario(20, association="least_loaded")
    assert any("nearest" in p for p in sharding_problems(least, 2))
    random_agent = sc.model_copy(update={"provisioning_agent": sc.provisioning_agent.model_copy(
        update={"name": "random", "params": {}})})
    assert any("'random'" in p for p in sharding_problems(random_agent, 2))
    with pytest.raises(ValueError, match="nearest"):
        World(least, seed=0, only_masps=["north"])
    with pytest.raises(ValueError, match="only_masps"):
        World(sc, seed=0, only_masps=["nowhere"])
    path = tmp_path / "random.yaml"
    text = (ROOT / "scenarios" / "poisson_100.yaml").read_text().replace("{name: static, params: {n_images: 4}}",
                                                                       "{name: random}")
    path.write_text(text)
    done = _cli("run", str(path), "--shards", "2", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "random" in done.stderr


def test_run_cli_shards_and_streams(tmp_path):
    done = _cli("run", "scenarios/three_users.yaml", "--shards", "1", "--stream", "--quiet", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["streamed"] is True and info["shards"] == 1
    assert "report.md" in {p.name for p in tmp_path.iterdir()}
    assert len(pd.read_parquet(tmp_path / "users.parquet")) == 3


def test_a_sharded_run_reports_progress_over_all_shards():
    seen = []
    run_sharded(_scenario(80), seed=1, shards=2, executor="local", on_user_done=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (80, 80)
    done = [d for d, _ in seen]
    assert done == sorted(done)  # never goes back


def test_statistical_round_records_score_utility_as_the_epochs_do():
    """The round records' QoE, cost and utility, scored many epochs at once when they are taken, equal
    :func:`sim.model.qoe.utility` over each epoch's users (with the epoch's own budget penalty)."""
    import numpy as np

    from sim.decisions import Provision, ProvisioningAgent
    from sim.model.qoe import utility

    class Greedy(ProvisioningAgent):
        """0.6 W for everyone: epochs of two or three users break the budget of 1 W, epochs of one do not."""

        name = "greedy"
        per_observation = True

        def decide(self, obs):
            return Provision(np.full(obs.n_users, 3), np.full(obs.n_users, 0.6))

    scenario = _scenario(50)
    world = World(scenario, seed=5, provisioning_agent=Greedy(None, np.random.default_rng(0)))
    assert world.evaluates_epochs_together
    result = world.run()
    rounds = pd.DataFrame([r.__dict__ for r in result.rounds])
    p_total = {m.name: m.p_total_w for m in scenario.masps}
    broken = 0
    for (_, _), epoch in rounds.groupby(["masp", "epoch"]):
        expected = utility(best_score=epoch.best_round_score.to_numpy(), threshold=epoch.threshold.to_numpy(),
                           latency_s=epoch.latency_s.to_numpy(), n_images=epoch.n_images.to_numpy(),
                           power_w=epoch.requested_power_w.to_numpy(), p_total_w=p_total[epoch.masp.iloc[0]],
                           params=world.qoe_params, qoe_fn=world.qoe_fn)
        broken += expected.power_violation
        assert epoch.qoe.tolist() == expected.qoe.tolist()
        assert epoch.cost.tolist() == expected.cost.tolist()
        assert epoch.utility.tolist() == expected.per_user_penalised.tolist()
    assert 0 < broken < rounds.groupby(["masp", "epoch"]).ngroups
    users = pd.DataFrame([u.__dict__ for u in result.users]).set_index("user_id")
    total_cost = rounds.groupby("user_id").cost.apply(lambda c: sum(c.tolist()))  # round by round, as the world adds
    assert total_cost.tolist() == users.loc[total_cost.index, "cost"].tolist()


def test_a_shard_keeps_its_users_draws_and_draws_them_the_same():
    scenario = _scenario(80)
    whole = World(scenario, seed=3)
    shard = World(scenario, seed=3, only_masps=[scenario.masps[0].name])
    assert shard._own_draws.shape == (shard.n_users, 4)
    for u in shard._user_ids.tolist():
        a, b = shard.draw_user(u), whole.draw_user(u)
        assert (a.prompt, a.threshold, a.arrival_s, a.complexity) == (b.prompt, b.threshold, b.arrival_s, b.complexity)
        assert a.position_m.tolist() == b.position_m.tolist()


@pytest.mark.parametrize("twins", [False, True])
def test_a_shards_users_are_those_whose_nearest_masp_it_simulates(twins):
    """The shard picks its users with distances computed for many users at once; ties (two MASPs at one place,
    users within 1 m of two MASPs) go as :meth:`World._nearest` sends them: to the first MASP in scenario order."""
    scenario = _scenario(400)
    masps = [m.model_copy(update={"position_m": [0.0, 0.0] if twins else m.position_m}) for m in scenario.masps]
    users = scenario.users.model_copy(update={"distance_m": scenario.users.distance_m.model_copy(
        update={"low": 0.0 if twins else 40.0, "high": 0.5 if twins else 160.0})})
    scenario = scenario.model_copy(update={"masps": masps, "users": users})
    whole = World(scenario, seed=5)
    expected = {m.name: [] for m in whole.masps}
    for u in range(whole.n_users):
        expected[whole._nearest(whole.draw_user(u).position_m).name].append(u)
    if twins:
        assert expected[whole.masps[0].name] == list(range(whole.n_users))
    for name, users_of in expected.items():
        assert World(scenario, seed=5, only_masps=[name])._user_ids.tolist() == users_of


def test_users_scanned_in_parts_give_the_shard_its_own_scan():
    """run_sharded scans the users in parts side by side and hands each shard its users: the same ids and draws
    as the shard finds alone, and the same run."""
    scenario = _scenario(300)
    nearest, drawn = (np.concatenate(x) for x in zip(*(scan_users(scenario, 4, a, b) for a, b in ((0, 7), (7, 300)))))
    whole_nearest, whole_drawn = World(scenario, seed=4).scan_users(0, 300)
    assert np.array_equal(nearest, whole_nearest) and np.array_equal(drawn, whole_drawn)
    name = scenario.masps[1].name
    mine = np.flatnonzero(nearest == 1)
    given = World(scenario, seed=4, only_masps=[name], own_users=(mine, drawn[mine]))
    alone = World(scenario, seed=4, only_masps=[name])
    assert given._user_ids.tolist() == alone._user_ids.tolist() and np.array_equal(given._own_draws, alone._own_draws)
    assert given.run().summary == alone.run().summary
    with pytest.raises(ValueError, match="own_users"):
        World(scenario, seed=4, own_users=(mine, drawn[mine]))
    with pytest.raises(ValueError, match="own_users"):
        World(scenario, seed=4, only_masps=[name], own_users=(mine, drawn))


def test_trace_tables_dictionary_encode_their_text_columns_only(tmp_path):
    world = World(_scenario(30), seed=1)
    with streamed(world, tmp_path):
        world.run()
    meta = pq.ParquetFile(tmp_path / "trace.parquet").metadata
    encodings = {meta.schema.column(i).name: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    assert any("DICTIONARY" in e for e in encodings["masp"])
    assert not any("DICTIONARY" in e for e in encodings["snr_db"])


@pytest.mark.parametrize("horizon_s", [None, 400.0])
def test_epochs_evaluated_together_give_the_records_of_one_at_a_time(horizon_s):
    """Evaluating the MASPs' started epochs together (the statistical world's default when the MASPs are
    independent) gives exactly the summary and records of evaluating each epoch when it starts."""
    sc = _scenario(120, horizon_s=horizon_s)
    extra = [sc.masps[0].model_copy(update={"name": f"m{k}", "position_m": [float(60 * k), 90.0]}) for k in range(2)]
    sc = sc.model_copy(update={"masps": [*sc.masps, *extra]})
    together = World(sc, seed=4)
    assert together.evaluates_epochs_together
    calls = []
    evaluate = together._statistical_epochs

    def counted(epochs):
        calls.append(len(epochs))
        return evaluate(epochs)

    together._statistical_epochs = counted
    alone = World(sc, seed=4)
    alone.evaluates_epochs_together = False
    alone.env.before_event = None
    a, b = together.run(), alone.run()
    assert max(calls) > 1 and sum(calls) > len(calls)  # several epochs per call
    assert a.summary == b.summary
    assert a.users == b.users
    pd.testing.assert_frame_equal(trace_frame(a.images, a.rounds), trace_frame(b.images, b.rounds))


def test_epochs_are_evaluated_one_at_a_time_when_the_masps_are_not_independent():
    sc = _scenario(10)
    assert World(sc, seed=0).evaluates_epochs_together
    least_loaded = sc.model_copy(update={"service": sc.service.model_copy(update={"association": "least_loaded"})})
    assert not World(least_loaded, seed=0).evaluates_epochs_together
    random_agent = sc.model_copy(update={"provisioning_agent": sc.provisioning_agent.model_copy(
        update={"name": "random", "params": {}})})
    assert not World(random_agent, seed=0).evaluates_epochs_together
    assert not World(sc, seed=0, external_decisions=True).evaluates_epochs_together
    assert not World(_scenario(10, delivery="bytes"), seed=0).evaluates_epochs_together


@settings(max_examples=12, deadline=None)
@given(st.integers(min_value=2, max_value=4), st.integers(min_value=1, max_value=3),
       st.sampled_from(["poisson", "batch"]), st.booleans(), st.integers(min_value=5, max_value=40),
       st.integers(min_value=0, max_value=10_000))
def test_epochs_together_equal_one_at_a_time_on_random_worlds(masps, gpus, process, ideal_link, n_users, seed):
    """Simultaneous events included (batch arrivals, a link with no transmission time: epochs of MASPs end at
    the same instants), evaluating started epochs together changes no summary, user or record."""
    sc = _scenario(n_users)
    base = sc.masps[0]
    sc = sc.model_copy(update={
        "masps": [base.model_copy(update={"name": f"m{k}", "gpus": gpus, "position_m": [80.0 * k, 0.0]})
                  for k in range(masps)],
        "arrivals": sc.arrivals.model_copy(update={"process": process}),
        "channel": sc.channel.model_copy(update={"bandwidth_hz": None if ideal_link else sc.channel.bandwidth_hz}),
    })
    together, alone = World(sc, seed=seed), World(sc, seed=seed)
    assert together.evaluates_epochs_together
    alone.evaluates_epochs_together = False
    alone.env.before_event = None
    a, b = together.run(), alone.run()
    assert a.summary == b.summary and a.users == b.users
    pd.testing.assert_frame_equal(trace_frame(a.images, a.rounds), trace_frame(b.images, b.rounds))


@pytest.mark.parametrize("delivery", ["statistical", "bytes"])
def test_each_masps_images_queue_on_its_own_gpus(delivery):
    """MASPs with 1 and 3 GPUs: every image leaves its MASP's FIFO queue at (position // gpus + 1) T, in both
    delivery modes (the statistical epochs of both MASPs evaluated together)."""
    scenario = _scenario(24, delivery)
    gpus = {scenario.masps[0].name: 1, scenario.masps[1].name: 3}
    masps = [m.model_copy(update={"gpus": gpus[m.name], "max_users_per_epoch": 1}) for m in scenario.masps]
    scenario = scenario.model_copy(update={"masps": masps})
    world = World(scenario, seed=2)
    result = world.run()
    if delivery == "statistical":
        assert world.evaluates_epochs_together and world.epochs_evaluated > world.evaluation_calls
    t = scenario.generator.inference_time_s
    seen = set()
    for image in result.images:
        expected = (image.image_index // gpus[image.masp] + 1) * t
        assert image.t_generation_end_s - image.t_queued_s == pytest.approx(expected, abs=1e-9)
        seen.add(image.masp)
    assert seen == set(gpus)


def test_a_users_draws_are_its_streams_integers_and_uniforms():
    """The three uniforms drawn in one call are, bit for bit, the stream's ``uniform(low, high)`` draws."""
    world = World(_scenario(10), seed=4)
    cfg = world.scenario.users
    for u in range(500):
        rng = world.streams.rng("users", u)
        expected = (int(rng.integers(len(world._pool))), float(rng.uniform(cfg.threshold.low, cfg.threshold.high)),
                    float(rng.uniform(cfg.distance_m.low, cfg.distance_m.high)), float(rng.uniform(0.0, 2 * math.pi)))
        assert world._user_draws(u) == expected
