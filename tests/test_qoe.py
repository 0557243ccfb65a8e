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


# -- the QoE forms -----------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sim.model.qoe import QOE_FORMS  # noqa: E402

scores = st.floats(0.0, 10.0)
thresholds = st.floats(1.0, 10.0)
latencies = st.floats(0.1, 600.0)
images = st.integers(1, 16)


@pytest.mark.parametrize("form", ["gated", "additive"])
@given(best=scores, thr=thresholds, lat=latencies, more_lat=st.floats(0.0, 600.0), n=images, more_n=st.integers(0, 16))
@settings(max_examples=300, deadline=None)
def test_sound_forms_never_reward_latency_or_images(form, best, thr, lat, more_lat, n, more_n):
    prm = QoEParams(form=form)
    base = float(qoe(best, thr, lat, n, prm))
    assert float(qoe(best, thr, lat + more_lat, n, prm)) <= base + 1e-12
    assert float(qoe(best, thr, lat, n + more_n, prm)) <= base + 1e-12


def test_the_paper_product_rewards_an_unsatisfied_user_for_waiting_and_for_more_images():
    prm = QoEParams(form="paper")
    assert qoe(6.0, 8.0, 50.0, 2, prm) > qoe(6.0, 8.0, 5.0, 2, prm)
    assert qoe(6.0, 8.0, 10.0, 8, prm) > qoe(6.0, 8.0, 10.0, 1, prm)


@pytest.mark.parametrize("form", QOE_FORMS)
def test_forms_by_hand(form):
    prm = QoEParams(form=form, max_latency_s=60.0, latency_weight=0.5)
    ell = math.log(1 + 60 / 30) / math.log(1 + 4)
    satisfied, unsatisfied = math.log(9 / 8), math.log(6 / 8)
    expected = {
        "paper": (ell * satisfied, ell * unsatisfied),
        "gated": (ell * satisfied, unsatisfied),
        "additive": (satisfied - 0.5 * 30 / 90, unsatisfied - 0.5 * 30 / 90),
    }[form]
    assert float(qoe(9.0, 8.0, 30.0, 4, prm)) == pytest.approx(expected[0])
    assert float(qoe(6.0, 8.0, 30.0, 4, prm)) == pytest.approx(expected[1])


def test_gated_qoe_is_bounded_and_a_lost_image_is_no_outlier():
    prm = QoEParams()  # gated
    lost = float(qoe(0.0, 8.0, 2.0, 1, prm))  # an undecodable image after one 2-s generation
    assert lost == pytest.approx(math.log(0.5 / 8.0))  # -2.77, against -13.7 for the paper's product
    assert float(qoe(0.0, 8.0, 2.0, 1, QoEParams(form="paper"))) == pytest.approx(math.log(31) / math.log(2) * lost)
    best = float(qoe(10.0, 7.5, 2.0, 1, prm))
    assert 0 < best < abs(lost)


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="qoe form must be one of gated, paper, additive"):
        QoEParams(form="product")
