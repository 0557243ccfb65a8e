"""Properties that hold for every valid input (hypothesis): the scenario round trip, the channel's
monotonicity and bounds, and the world's conservation of users and images (with faults too)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.config import parse_scenario, scenario_to_yaml
from sim.model.channel import Channel, ChannelParams, ber_nakagami
from sim.world.simulation import World

import yaml

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def scenarios(draw, max_users: int = 6):
    """A small valid scenario (statistical delivery, so that a run takes milliseconds)."""
    n_masps = draw(st.integers(1, 2))
    p_total_w = draw(st.floats(0.01, 2.0, **finite))  # one budget for every MASP
    masps = [{"name": f"m{k}", "gpus": draw(st.integers(1, 2)),
              "p_total_w": p_total_w,
              "max_users_per_epoch": draw(st.integers(1, 3)),
              "position_m": [draw(st.floats(-200, 200, **finite)), draw(st.floats(-200, 200, **finite))]}
             for k in range(n_masps)]
    low = draw(st.floats(0.01, 9.0, **finite))
    near = draw(st.floats(1.0, 150.0, **finite))
    process = draw(st.sampled_from(["batch", "poisson"]))
    raw = {
        "name": "prop",
        "seed": draw(st.integers(0, 2**31)),
        "arrivals": {"process": process, "n_users": draw(st.integers(1, max_users)),
                     **({"rate_per_s": draw(st.floats(0.01, 2.0, **finite))} if process == "poisson" else {})},
        "users": {"threshold": {"low": low, "high": low + draw(st.floats(0.0, 1.0, **finite))},
                  "distance_m": {"low": near, "high": near + draw(st.floats(0.0, 100.0, **finite))}},
        "masps": masps,
        "channel": {"delivery": "statistical", "nakagami_m": draw(st.sampled_from([0.5, 1.0, 2.0, 3.5])),
                    "shadowing_sigma_db": draw(st.floats(0.0, 8.0, **finite))},
        "generator": {"inference_time_s": draw(st.floats(0.1, 5.0, **finite)), "image_size": 64},
        "service": {"max_rounds": draw(st.integers(1, 3)), "max_images_per_round": draw(st.integers(1, 6)),
                    "association": draw(st.sampled_from(["nearest", "least_loaded"])),
                    "horizon_s": draw(st.one_of(st.none(), st.floats(1.0, 200.0, **finite)))},
        "provisioning_agent": draw(st.sampled_from([{"name": "static", "params": {"n_images": 1}}, {"name": "random"}])),
        "prompt_agent": {"name": draw(st.sampled_from(["raw", "random", "empirical"]))},
    }
    return parse_scenario(raw, source="hypothesis")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_a_scenario_survives_its_yaml_round_trip(scenario):
    again = parse_scenario(yaml.safe_load(scenario_to_yaml(scenario)), source="round trip")
    assert again == scenario


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_world_conserves_users_and_images(scenario):
    world = World(scenario, seed=scenario.seed)
    result = world.run()
    s = result.summary
    assert s["served_users"] + s["unserved_users"] + s["in_service_users"] == s["users"] <= scenario.arrivals.n_users
    users = result.users
    assert len(users) == s["served_users"] + s["unserved_users"]
    assert all(1 <= u.rounds <= scenario.service.max_rounds for u in users)
    assert all(u.satisfied or u.rounds == scenario.service.max_rounds for u in users)
    # every image of a finished round is recorded (with a horizon, images of rounds cut off may be too)
    assert len(result.images) == result.images_generated >= sum(r.n_images for r in result.rounds)
    assert all(im.decodable or im.received_score == 0 for im in result.images)  # delivered, or lost with score 0
    if scenario.service.horizon_s is None:
        assert s["users"] == scenario.arrivals.n_users and s["in_service_users"] == 0
        assert sum(u.images for u in users) == len(result.images) == sum(r.n_images for r in result.rounds)
    assert all(0 <= u.best_score <= 10 for u in users)


@st.composite
def faulty_scenarios(draw):
    """A small valid scenario with faults of every kind (random and scheduled), in either delivery mode."""
    scenario = draw(scenarios())
    data = scenario.model_dump(mode="json")
    masps = [m["name"] for m in data["masps"]]

    def windows(with_masp=True, with_gpu=False):
        spans = []
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.floats(0.0, 100.0, **finite))
            window = {"start_s": start, "end_s": start + draw(st.floats(0.1, 50.0, **finite))}
            if with_masp and draw(st.booleans()):
                window["masp"] = draw(st.sampled_from(masps))
            if with_gpu and draw(st.booleans()):
                window["gpu"] = 0
            spans.append(window)
        return spans

    def random_failures():
        return draw(st.one_of(st.none(), st.fixed_dictionaries({"mtbf_s": st.floats(5.0, 200.0, **finite),
                                                                 "mttr_s": st.floats(0.5, 30.0, **finite)})))

    data["faults"] = {
        "masp_outages": windows(), "masp_failures": random_failures(),
        "gpu_outages": windows(with_gpu=True), "gpu_failures": random_failures(),
        "link_blockages": windows(), "link_failures": random_failures(),
        "assessor_outages": windows(with_masp=False), "assessor_failures": random_failures(),
        "assessor_failure_probability": draw(st.sampled_from([0.0, 0.2])),
        "on_masp_down": draw(st.sampled_from(["wait", "reassociate", "give_up"])),
    }
    data["channel"]["delivery"] = draw(st.sampled_from(["statistical", "bytes"]))
    return parse_scenario(data, source="hypothesis")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faulty_scenarios())
def test_the_world_keeps_its_books_whatever_fails(scenario):
    result = World(scenario, seed=scenario.seed).run()
    books = result.conservation
    assert books["holds"], books
    s = result.summary
    assert books["users_arrived"] == s["users"]
    assert books["users_served"] == s["served_users"]
    assert books["users_out_of_rounds"] + books["users_gave_up"] == s["unserved_users"]
    assert sum(books["images_lost"].values()) == s["lost_images"] == sum(bool(im.lost) for im in result.images)
    assert all(im.received_score == 0 and not im.decodable for im in result.images if im.lost)
    assert all(u.satisfied or u.rounds == scenario.service.max_rounds or u.outcome == "masp_down"
               for u in result.users)
    if scenario.service.horizon_s is None:
        assert books["users_in_service"] == 0 and books["images_in_flight"] == 0
        assert len(result.users) == scenario.arrivals.n_users


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-6, 10.0, **finite), st.floats(1.0, 500.0, **finite), st.floats(-10.0, 10.0, **finite),
       st.floats(1.01, 4.0, **finite), st.sampled_from([0.5, 1.0, 2.0, 3.5, 7.0]))
def test_the_channel_is_monotone_and_bounded(power, distance, shadowing_db, factor, m):
    channel = Channel(ChannelParams(nakagami_m=m))
    snr = float(channel.snr(power, distance, shadowing_db, 1.0))
    assert snr >= 0
    assert float(channel.snr(power * factor, distance, shadowing_db, 1.0)) > snr  # more power, more SNR
    assert float(channel.snr(power, distance * factor, shadowing_db, 1.0)) < snr  # farther, less SNR
    ber = float(channel.ber_given_shadowing(power, distance, shadowing_db))
    assert 0.0 <= ber <= 0.5
    assert float(channel.ber_given_shadowing(power * factor, distance, shadowing_db)) <= ber
    assert float(channel.ber_given_shadowing(power, distance * factor, shadowing_db)) >= ber
    for s in (snr, snr * factor):
        assert 0.0 <= float(ber_nakagami(s, m)) <= 0.5
    assert float(ber_nakagami(snr * factor, m)) <= float(ber_nakagami(snr, m))
    t = float(channel.transmission_time_s(1e6, snr))
    assert t >= 0 and (math.isinf(t) or float(channel.transmission_time_s(1e6, snr * factor)) <= t)
    assert np.all(np.isfinite([snr, ber]))
