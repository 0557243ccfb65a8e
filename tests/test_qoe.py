"""QoE, cost and utility against hand computations of eqs. 22-24."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.model.qoe import QoEParams, cost, latency_term, qoe, quality_term, utility

P = QoEParams(max_latency_s=60.0, eta_q=1.0, eta_c=0.1, cost_per_image=0.5, penalty=2.0, quality_floor=0.5)


def test_qoe_hand_computed():
    # log_{1+4}(1 + 60/30) * ln(9/8)
    expected = math.log(3) / math.log(5) * math.log(9 / 8)
    assert qoe(9.0, 8.0, 30.0, 4, P) == pytest.approx(expected)


def test_defined_at_one_image_and_sign_follows_threshold():
    assert np.isfinite(qoe(8.0, 7.5, 10.0, 1, P))
    assert qoe(8.0, 7.5, 10.0, 1, P) > 0
    assert qoe(7.0, 7.5, 10.0, 1, P) < 0
    assert qoe(7.5, 7.5, 10.0, 1, P) == 0


def test_late_unsatisfied_user_is_not_rewarded():
    # The printed eq. 23 would give (negative latency term) x (negative quality term) > 0 here.
    assert qoe(6.0, 8.0, 600.0, 2, P) < 0


def test_latency_term_monotone_and_flatter_with_more_images():
    lat = np.array([5.0, 20.0, 60.0, 120.0])
    one, four = latency_term(lat, 1, 60.0), latency_term(lat, 4, 60.0)
    assert np.all(np.diff(one) < 0) and np.all(np.diff(four) < 0)
    assert np.all(np.abs(np.diff(four)) < np.abs(np.diff(one)))
    with pytest.raises(ValueError):
        latency_term(10.0, 0, 60.0)


def test_undecodable_image_bounded_by_floor():
    assert quality_term(0.0, 8.0, 0.5) == pytest.approx(math.log(0.5 / 8.0))


def test_cost_eq24():
    assert cost([4, 2], [0.25, 0.5], P).tolist() == [4 * 0.75, 2 * 1.0]


def test_utility_penalties():
    u = utility(
        best_score=[9.0, 7.0, 8.0],
        threshold=[8.0, 8.0, 7.5],
        latency_s=[20.0, 20.0, 20.0],
        n_images=[2, 1, 0],
        power_w=[0.5, 0.3, 0.3],
        p_total_w=1.0,
        params=P,
    )
    # user 1 misses its threshold, user 2 has N = 0: J = 2; powers sum to 1.1 > 1: Q rho = 3 rho.
    assert u.violations == 2 and u.power_violation
    assert u.penalty == pytest.approx(2.0 * (2 + 3))
    q = qoe([9.0, 7.0, 8.0], [8.0, 8.0, 7.5], 20.0, [2, 1, 1], P)
    c = np.array([2 * 1.0, 1 * 0.8, 0.0])
    assert u.total == pytest.approx(float(np.sum(q - 0.1 * c)) - 10.0)


def test_utility_rejects_negative_power():
    with pytest.raises(ValueError):
        utility([8], [7], [1], [1], [-0.1], 1.0, P)


def test_params_validated():
    with pytest.raises(ValueError):
        QoEParams(max_latency_s=0)
    with pytest.raises(ValueError):
        QoEParams(eta_c=-1)
