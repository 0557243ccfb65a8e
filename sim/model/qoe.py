r"""QoE, cost and utility (the paper's eqs. 22-24), vectorised over users.

**QoE (eq. 23).** The paper multiplies a latency term, Hossfeld's logarithmic
law :math:`\log_{N_i}(L_{max} / (N_i T_\zeta))`, by a Weber-Fechner quality
term :math:`\ln(\max_k Q_i^{(k)} / Q_i^{th})`. Both factors are kept well
defined here:

* latency term :math:`\ell(L, N) = \log_{1 + N}(1 + L_{max} / L)` (:func:`latency_term`):
  base :math:`1 + N_i` is defined at :math:`N_i = 1`, and
  :math:`1 + L_{max}/L_i` keeps it positive and falling with the measured
  latency :math:`L_i` (queueing + generation + transmission);
* quality term :math:`q = \ln(\max(Q_i^{best}, Q_{floor}) / Q_i^{th})`
  (:func:`quality_term`): positive exactly when the threshold is met;
  :math:`Q_{floor}` bounds it for an undecodable image (score 0).

Three forms combine them (``qoe.form``; :data:`QOE_FORMS`):

* ``gated`` (the default): :math:`\ell q` for a satisfied user, :math:`q` for
  an unsatisfied one. Latency and images only count once the image is good
  enough, so QoE never rises with latency or with the number of images for any
  user, and it is bounded: :math:`[\ln(Q_{floor}/Q^{th}), \ell_{max} \ln(10/Q^{th})]`;
* ``paper``: :math:`\ell q` for every user, the paper's product. For an
  unsatisfied user (:math:`q < 0`) it *rises* with latency and with the number
  of images (the smaller :math:`\ell`, the less negative), and a lost image at
  a short latency scores far below anything else (:math:`4.95 \times \ln(0.5/8)
  = -13.7` at :math:`N = 1`, 2 s). Kept to reproduce the paper;
* ``additive``: :math:`q - w_L L / (L + L_{max})`: the quality term less a
  bounded latency cost with weight :math:`w_L` (``qoe.latency_weight``); no
  dependence on the number of images.

QoE is pluggable: anything with the signature of :func:`qoe` can be passed
to the world.

**Cost (eq. 24).** :math:`C_i = N_i (c_\zeta + P_i)`.

**Utility (eq. 22a).** :math:`U = \sum_i \eta_q \mathrm{QoE}_i - \eta_c C_i
- J\rho - Q\rho\,[\sum_i P_i > P_{total}]`, with J the users that miss their
threshold or get :math:`N_i < 1`, and Q the number of users decided for.

>>> paper = QoEParams(max_latency_s=60.0, form="paper")
>>> round(float(qoe(8.8, 8.0, 20.0, 1, paper)), 4)   # log2(4) * ln(1.1)
0.1906
>>> gated = QoEParams(max_latency_s=60.0)
>>> float(qoe(8.8, 8.0, 20.0, 1, gated)) == float(qoe(8.8, 8.0, 20.0, 1, paper))   # satisfied: the same
True
>>> [round(float(qoe(7.0, 8.0, t, 1, gated)), 4) for t in (5.0, 50.0)]            # unsatisfied: ln(7/8), whatever the latency
[-0.1335, -0.1335]
>>> [round(float(qoe(7.0, 8.0, t, 1, paper)), 4) for t in (5.0, 50.0)]            # the paper's product rises with latency
[-0.4941, -0.1519]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

from sim.model.service import exceeds_budget


#: The QoE forms (module docstring): ``gated`` (default), ``paper``, ``additive``.
QOE_FORMS = ("gated", "paper", "additive")


@dataclass(frozen=True)
class QoEParams:
    """Constants of QoE, cost and utility (from the scenario's ``qoe`` section)."""

    max_latency_s: float = 60.0
    eta_q: float = 10.0
    eta_c: float = 0.05
    cost_per_image: float = 0.5
    penalty: float = 1.0
    quality_floor: float = 0.5
    #: How latency and quality combine (:data:`QOE_FORMS`).
    form: str = "gated"
    #: Weight of the latency cost in the ``additive`` form.
    latency_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.form not in QOE_FORMS:
            raise ValueError(f"qoe form must be one of {', '.join(QOE_FORMS)}, got {self.form!r}")
        if self.max_latency_s <= 0:
            raise ValueError("max_latency_s must be > 0 seconds")
        if self.quality_floor <= 0:
            raise ValueError("quality_floor must be > 0 (it bounds ln(Q / Q_th))")
        for name in ("eta_q", "eta_c", "cost_per_image", "penalty", "latency_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


class QoEFunction(Protocol):
    def __call__(
        self, best_score: ArrayLike, threshold: ArrayLike, latency_s: ArrayLike, n_images: ArrayLike, params: QoEParams
    ) -> np.ndarray: ...


def latency_term(latency_s: ArrayLike, n_images: ArrayLike, max_latency_s: float) -> np.ndarray:
    """``log_{1+N}(1 + L_max / L)``: positive, falling with latency, flatter for more images."""
    latency = np.maximum(np.asarray(latency_s, dtype=float), 1e-9)
    n = np.asarray(n_images, dtype=float)
    if n.min(initial=1.0) < 1:
        raise ValueError("n_images must be >= 1 for the latency term")
    return np.log1p(max_latency_s / latency) / np.log1p(n)


def quality_term(best_score: ArrayLike, threshold: ArrayLike, quality_floor: float) -> np.ndarray:
    """Weber-Fechner ``ln(max(Q_best, Q_floor) / Q_th)``: positive iff the threshold is met."""
    best = np.maximum(np.asarray(best_score, dtype=float), quality_floor)
    thr = np.asarray(threshold, dtype=float)
    if thr.min(initial=1.0) <= 0:
        raise ValueError("thresholds must be > 0")
    return np.log(best / thr)


def qoe(
    best_score: ArrayLike, threshold: ArrayLike, latency_s: ArrayLike, n_images: ArrayLike, params: QoEParams
) -> np.ndarray:
    """QoE of users with best received score, threshold, latency and images received, in ``params.form``."""
    q = quality_term(best_score, threshold, params.quality_floor)
    if params.form == "additive":
        latency = np.asarray(latency_s, dtype=float)
        return q - params.latency_weight * latency / (latency + params.max_latency_s)
    ell = latency_term(latency_s, n_images, params.max_latency_s)
    if params.form == "paper":
        return ell * q
    return np.where(q > 0, ell * q, q)


def cost(n_images: ArrayLike, power_w: ArrayLike, params: QoEParams) -> np.ndarray:
    """Eq. 24: ``N_i * (c_zeta + P_i)``."""
    return np.asarray(n_images, dtype=float) * (params.cost_per_image + np.asarray(power_w, dtype=float))


def user_utility(qoe_value: ArrayLike, cost_value: ArrayLike, violated: ArrayLike, params: QoEParams) -> np.ndarray:
    """One user's utility: ``eta_q QoE - eta_c C - rho [violated]``.

    ``violated`` is 1 when the user missed its threshold (or got no image), or a
    probability of that: the expression is linear, so expected QoE, cost and
    violation probability give the expected utility (the oracle uses it so).
    The world scores a user's whole stay with it, and :func:`utility` each
    epoch's users.
    """
    return (
        params.eta_q * np.asarray(qoe_value, dtype=float)
        - params.eta_c * np.asarray(cost_value, dtype=float)
        - params.penalty * np.asarray(violated, dtype=float)
    )


def expected_user_utility(
    latency_s: ArrayLike,
    n_images: ArrayLike,
    expected_quality_term: ArrayLike,
    expected_positive_quality_term: ArrayLike,
    cost_value: ArrayLike,
    p_violation: ArrayLike,
    params: QoEParams,
) -> np.ndarray:
    """Expected :func:`user_utility` of a user whose latency is known and whose best score is uncertain.

    With the latency known, QoE is linear in the quality term on each side of
    the threshold, so its expectation needs only ``E[q]`` and ``E[max(q, 0)]``:
    ``paper``: ``l E[q]``; ``gated``: ``l E[q+] + (E[q] - E[q+])``;
    ``additive``: ``E[q] - w_L L / (L + L_max)``. The result is
    ``eta_q E[QoE] - eta_c C - rho P(violation)`` (what the oracle maximises).
    """
    e_q = np.asarray(expected_quality_term, dtype=float)
    if params.form == "additive":
        latency = np.asarray(latency_s, dtype=float)
        e_qoe = e_q - params.latency_weight * latency / (latency + params.max_latency_s)
        return params.eta_q * e_qoe - params.eta_c * np.asarray(cost_value, dtype=float) - params.penalty * np.asarray(
            p_violation, dtype=float
        )
    ell = latency_term(latency_s, n_images, params.max_latency_s)
    if params.form == "paper":
        gain = params.eta_q * ell * e_q  # written so, the oracle's paper-form numbers match release 0.1 to the bit
    else:
        e_pos = np.asarray(expected_positive_quality_term, dtype=float)
        gain = params.eta_q * (ell * e_pos + (e_q - e_pos))
    return gain - params.eta_c * np.asarray(cost_value, dtype=float) - params.penalty * np.asarray(p_violation, dtype=float)


def user_utilities(
    best_score: ArrayLike,
    threshold: ArrayLike,
    latency_s: ArrayLike,
    n_images: ArrayLike,
    power_w: ArrayLike,
    power_violation: ArrayLike,
    params: QoEParams,
    qoe_fn: QoEFunction = qoe,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each user's part of eq. 22a: ``(QoE, cost, eta_q QoE - eta_c C, that less rho [own violation] - rho
    [budget broken], violated)``.

    ``power_violation`` is 1.0 where the user's epoch broke the power budget (one number for one epoch, or one
    per user for the users of many epochs at once: the world scores its records so). :func:`utility` is this
    over one epoch's users, with the epoch's totals.
    """
    n = np.atleast_1d(np.asarray(n_images, dtype=float))
    power = np.atleast_1d(np.asarray(power_w, dtype=float))
    best = np.atleast_1d(np.asarray(best_score, dtype=float))
    thr = np.atleast_1d(np.asarray(threshold, dtype=float))
    if power.min(initial=0.0) < 0:
        raise ValueError("transmit powers must be >= 0 W")
    q = qoe_fn(best, thr, latency_s, np.maximum(n, 1.0), params)
    c = cost(n, power, params)
    per_user = user_utility(q, c, 0.0, params)
    violated = (best < thr) | (n < 1)
    return q, c, per_user, per_user - params.penalty * (violated + np.asarray(power_violation, dtype=float)), violated


@dataclass(frozen=True)
class UtilityBreakdown:
    """Utility of one decision and its parts (per-user arrays and totals)."""

    qoe: np.ndarray
    cost: np.ndarray
    #: Per-user utility before penalties: eta_q QoE_i - eta_c C_i.
    per_user: np.ndarray
    #: Per-user utility with penalties: ``per_user - rho [own violation] - rho [budget broken]``
    #: (sums to ``total``).
    per_user_penalised: np.ndarray
    #: Users that missed their threshold or got N_i < 1 (J in eq. 22).
    violations: int
    power_violation: bool
    penalty: float
    total: float


def utility(
    best_score: ArrayLike,
    threshold: ArrayLike,
    latency_s: ArrayLike,
    n_images: ArrayLike,
    power_w: ArrayLike,
    p_total_w: float,
    params: QoEParams,
    qoe_fn: QoEFunction = qoe,
) -> UtilityBreakdown:
    """Eq. 22a with the penalties of eq. 22: ``sum(eta_q QoE - eta_c C) - J rho - Q rho [sum P > P_total]``."""
    power = np.atleast_1d(np.asarray(power_w, dtype=float))
    power_violation = exceeds_budget(power, p_total_w)
    q, c, per_user, penalised, violated = user_utilities(best_score, threshold, latency_s, n_images, power,
                                                         float(power_violation), params, qoe_fn)
    violations = int(violated.sum())
    pen = params.penalty * (violations + (len(violated) if power_violation else 0))
    return UtilityBreakdown(
        qoe=q,
        cost=c,
        per_user=per_user,
        per_user_penalised=penalised,
        violations=violations,
        power_violation=power_violation,
        penalty=float(pen),
        total=float(per_user.sum() - pen),
    )
