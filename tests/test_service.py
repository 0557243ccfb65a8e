"""The round rules of sim.model.service, against hand computations and a brute-force FIFO queue."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.backends import build_service_models
from sim.config import parse_scenario
from sim.model import service
from sim.model.channel import Channel, ChannelParams, ber_awgn, ber_nakagami, db_to_linear
from sim.model.qoe import QoEParams, cost, qoe, user_utility, utility
from sim.model.quality import QualityModel


def test_budget_test_has_a_relative_tolerance():
    assert not service.exceeds_budget([0.5, 0.5], 1.0)
    assert not service.exceeds_budget([0.5, 0.5 + 5e-10], 1.0)  # rounding, within 1e-9 of P_total
    assert service.exceeds_budget([0.5, 0.5 + 2e-9], 1.0)
    assert service.exceeds_budget([3.0], 2.0)


def test_powers_above_the_budget_are_scaled_down_in_proportion():
    sent, broken = service.transmitted_powers([0.3, 0.9], 0.6)
    assert broken and sent.tolist() == pytest.approx([0.15, 0.45])
    sent, broken = service.transmitted_powers([0.1, 0.2], 0.6)
    assert not broken and sent.tolist() == [0.1, 0.2]


def _fifo_brute_force(n_images, gpus, t):
    """Completion time of every image, queued user by user, each taking the earliest free GPU."""
    free = [0.0] * gpus
    done = []
    for n in n_images:
        mine = []
        for _ in range(n):
            k = int(np.argmin(free))
            free[k] += t
            mine.append(free[k])
        done.append(mine)
    return done


@given(st.lists(st.integers(0, 5), min_size=1, max_size=6), st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_gpu_queue_matches_a_brute_force_fifo(n_images, gpus):
    t = 2.5
    brute = _fifo_brute_force(n_images, gpus, t)
    per_image = service.image_done_times(n_images, gpus, t, k_max=max(max(n_images), 1))
    last = service.gpu_completion_times(n_images, gpus, t)
    for i, n in enumerate(n_images):
        assert per_image[i, :n].tolist() == pytest.approx(brute[i])
        assert last[i] == (pytest.approx(brute[i][-1]) if n else 0.0)


def test_gpu_completion_times_broadcast_over_combinations():
    combos = np.array([[1, 1, 1], [2, 3, 1]])
    assert service.gpu_completion_times(combos, 2, 1.0).tolist() == [[1.0, 1.0, 2.0], [1.0, 3.0, 3.0]]


def test_ber_model_choice():
    ch = Channel(ChannelParams(path_loss_exponent=3.0, shadowing_sigma_db=4.0, nakagami_m=2.0, noise_power_w=1e-9))
    p, d, x, g = 0.1, 100.0, -3.0, np.array([0.2, 1.0, 3.0])
    snr_mean = 0.1 * 100.0**-3 * db_to_linear(-3.0) / 1e-9
    avg = service.image_ber(ch, "average_fading", p, d, x, g)
    assert avg.shape == (3,) and np.allclose(avg, ber_nakagami(snr_mean, 2.0))  # the fading draw does not matter
    block = service.image_ber(ch, "block_fading", p, d, x, g)
    assert np.allclose(block, ber_awgn(snr_mean * g))  # one fading draw holds for the image
    with pytest.raises(ValueError, match="ber_model must be one of"):
        service.image_ber(ch, "fast", p, d, x, g)


def test_zero_power_sends_nothing_and_nobody_waits_for_it():
    ch = Channel(ChannelParams(bandwidth_hz=1e6))
    snr = np.array([0.0, 1.0])
    t = service.transmission_time_s(ch, 1e6, snr, np.array([0.0, 0.1]))
    assert math.isinf(t[0]) and t[1] == pytest.approx(1e6 / (1e6 * math.log2(2.0)))
    assert service.delivery_delay_s(t).tolist() == pytest.approx([0.0, 1.0])
    ideal = Channel(ChannelParams(bandwidth_hz=None))  # transmission time ignored: 0 s whatever the SNR
    assert float(service.transmission_time_s(ideal, 1e6, 5.0, 0.1)) == 0.0


def test_received_scores_follow_the_damage_model():
    quality = QualityModel.default()
    ber = np.array([1e-7, 1e-4, 0.5])
    gen = np.array([8.0, 8.0, 8.0])
    p_u = quality.p_undecodable(ber, 60_000)
    keep = service.received_scores(quality, ber, gen, np.ones(3), 60_000)  # uniform 1: never undecodable
    assert np.allclose(keep, gen * quality.retention(ber, 60_000))
    lost = service.received_scores(quality, ber, gen, np.zeros(3), 60_000)  # uniform 0: undecodable iff p_u > 0
    assert np.array_equal(lost == 0.0, p_u > 0)


def test_user_utility_is_linear_in_its_parts():
    prm = QoEParams(eta_q=10.0, eta_c=0.05, penalty=1.0)
    assert float(user_utility(0.2, 4.0, True, prm)) == pytest.approx(10 * 0.2 - 0.05 * 4.0 - 1.0)
    expected = user_utility(0.2, 4.0, 0.25, prm)  # a violation probability gives the expected utility
    assert float(expected) == pytest.approx(0.75 * user_utility(0.2, 4.0, 0, prm) + 0.25 * user_utility(0.2, 4.0, 1, prm))


def test_penalised_per_user_utilities_sum_to_the_epoch_total():
    prm = QoEParams()
    best, thr, lat, n = [8.5, 6.0, 9.0], [8.0, 8.0, 8.0], [10.0, 20.0, 30.0], [2, 3, 0]
    for power in ([0.2, 0.3, 0.4], [0.6, 0.6, 0.6]):  # within, then above a 1 W budget
        b = utility(best, thr, lat, n, power, 1.0, prm)
        assert b.per_user_penalised.sum() == pytest.approx(b.total)
        q = qoe(best, thr, lat, np.maximum(n, 1), prm)
        violated = np.array([False, True, True]) + float(b.power_violation)
        assert b.per_user_penalised == pytest.approx(prm.eta_q * q - prm.eta_c * cost(n, power, prm) - prm.penalty * violated)


def test_service_models_are_built_once_from_the_scenario():
    sc = parse_scenario({"name": "s", "channel": {"ber_model": "block_fading"}, "masps": [{"gpus": 3}]})
    models = build_service_models(sc)
    assert models.ber_model == "block_fading" and models.gpus == 3
    assert models.inference_time_s == sc.generator.inference_time_s
    assert models.qoe == QoEParams(**sc.qoe.model_dump())
    with pytest.raises(ValueError, match="ber_model"):
        service.ServiceModels(models.channel, models.quality, models.qoe, ber_model="nope")


@pytest.mark.parametrize("form", ["gated", "paper", "additive"])
def test_expected_utility_of_a_known_latency_is_the_mean_utility(form):
    """Two equally likely best scores (one below, one above the threshold): the mean of the two utilities."""
    from sim.model.qoe import expected_user_utility, quality_term

    prm = QoEParams(form=form)
    thr, lat, n, c = 8.0, 12.0, 3, 2.5
    scores = np.array([6.0, 9.0])
    q = quality_term(scores, thr, prm.quality_floor)
    realised = user_utility(qoe(scores, thr, lat, n, prm), c, scores < thr, prm)
    expected = expected_user_utility(lat, n, q.mean(), np.maximum(q, 0).mean(), c, 0.5, prm)
    assert float(expected) == pytest.approx(float(realised.mean()), rel=1e-12)


def test_holm_and_paired_tests():
    from scipy import stats as sps

    from sim.stats import holm_adjust, paired_t_test

    a, b = np.array([2.0, 3.1, 4.5, 3.3, 2.9]), np.array([1.0, 2.0, 3.0, 3.1, 2.0])
    assert paired_t_test(a, b) == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-10)
    # Holm by hand: sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert holm_adjust([0.04, 0.01, 0.03]).tolist() == pytest.approx([0.06, 0.03, 0.06])
    assert np.isnan(holm_adjust([np.nan, 0.02])[0]) and holm_adjust([np.nan, 0.02])[1] == pytest.approx(0.02)


def test_image_ber_per_user_spreads_to_the_per_image_ber():
    import numpy as np

    from sim.model.channel import Channel
    from sim.model.service import image_ber, spread

    ch = Channel()
    p, d, x = np.array([[0.2], [0.5]]), np.array([[60.0], [140.0]]), np.array([[1.5], [-3.0]])
    fading = np.random.default_rng(2).gamma(2.0, 0.5, (2, 5))
    per_user = image_ber(ch, "average_fading", p, d, x, fading, per_image=False)
    per_image = image_ber(ch, "average_fading", p, d, x, fading)
    assert per_user.shape == (2, 1) and per_image.shape == (2, 5)
    assert spread(per_user, fading.shape).tolist() == per_image.tolist()
    block = image_ber(ch, "block_fading", p, d, x, fading, per_image=False)
    assert block.shape == (2, 5)  # block fading: every image its own BER whatever is asked


@given(st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=6), st.integers(min_value=1, max_value=4))
def test_the_last_image_done_is_the_latest_gpu_completion(n_images, gpus):
    latest = float(service.gpu_completion_times(n_images, gpus, 2.5).max())
    assert service.last_image_done_s(sum(n_images), gpus, 2.5) == latest


@settings(max_examples=60, deadline=None)
@given(users=st.integers(1, 6), k=st.integers(1, 8), m=st.sampled_from([0.5, 1.0, 2.0, 3.7, 8.0]),
       block=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_snr_and_image_ber_are_the_two_calls_bit_for_bit(users, k, m, block, seed):
    rng = np.random.default_rng(seed)
    ch = Channel(ChannelParams(nakagami_m=m))
    model = "block_fading" if block else "average_fading"
    p = rng.uniform(0.0, 1.0, users)[:, None]
    d = rng.uniform(1.0, 500.0, users)[:, None]
    x = rng.normal(0.0, 8.0, users)[:, None]
    g = rng.gamma(m, 1.0 / m, (users, k))
    snr, ber = service.snr_and_image_ber(ch, model, p, d, x, g)
    assert np.array_equal(snr, ch.snr(p, d, x, g))
    assert np.array_equal(ber, service.image_ber(ch, model, p, d, x, g, per_image=False))
    one = ch.snr_and_ber_given_shadowing(0.3, 80.0, 2.5, 1.7)  # plain numbers
    assert one == (ch.snr(0.3, 80.0, 2.5, 1.7), ch.ber_given_shadowing(0.3, 80.0, 2.5))
    with pytest.raises(ValueError, match="fading_gain"):
        ch.snr_and_ber_given_shadowing(p, d, x, -g)
