"""The model-based oracle: the (N, P) that maximises the *expected* utility of one epoch.

It sees what any provisioning agent sees (complexities, distances, thresholds,
``P_total``), not the shadowing realisation nor the prompt's random quality
effect. Unlike a learner, it knows the exact quality model, channel and QoE
model, and the latency model of the FIFO GPU queue, so it is an upper reference
for agents that must learn them. It is myopic: one round's expected utility
(eq. 22a with its penalties), ignoring later rounds.

Expected per-user terms, for user ``i`` with ``N`` images and power ``P``
(``mu`` = ``QualityModel.mean_score(c, strategy)``, ``s`` = ``seed_sd``):

* the prompt effect ``u ~ N(0, prompt_sd)`` and the shadowing ``x ~ N(0, sigma_dB)``
  are integrated with Gauss-Hermite nodes; given them, the BER is
  ``Channel.ber_given_shadowing(P, d, x)`` and every image independently is
  undecodable (score 0) with ``QualityModel.p_undecodable`` or scores
  ``clip(mu + u + s eps, 0, 10) * QualityModel.retention``; so the received
  score has CDF ``F(b) = p_u + (1 - p_u) Phi((b / r - mu - u) / s)`` on
  ``[0, 10 r)`` and the best of ``N`` has ``F^N``;
* ``P(satisfied) = 1 - F(thr)^N`` (0 when ``thr > 10 r``);
* ``E[q] = E[ln(max(B, floor) / thr)] = ln(floor / thr) + int_floor^{10 r} (1 - F(b)^N) / b db``
  (Gauss-Legendre in ``b``), and for the gated QoE also ``E[max(q, 0)]``, the
  same integral from ``max(floor, thr)``;
* latency: the user's last image leaves the FIFO GPU queue at
  ``(S_i - 1) // gpus + 1`` inference times (``S_i`` images queued up to and
  including user ``i``), plus its transmission time at the median SNR
  (no shadowing, mean fading) -- milliseconds against seconds of generation;
* ``E[U_i]`` is :func:`sim.model.qoe.expected_user_utility` of these (the
  scenario's QoE form; ``eta_q l E[q] - eta_c C - rho (1 - P(satisfied))`` for
  the paper's product), and ``Q rho`` more if the powers exceed ``P_total``
  (transmission then at the scaled-down powers, as in the world and the env).

Search: every ``N`` combination (``itertools.product``, up to ``max_combos``;
beyond that coordinate ascent from the best uniform ``N``); for each, the
power split is the exact maximum on a uniform grid of ``P_total / power_grid``
steps (a max-plus dynamic programme over users, using per-user tables
interpolated in ``log P`` from an exact log-spaced table), and the best
combination's split is polished with SLSQP on the exact objective. The oracle
assumes the scenario's QoE form (not a custom QoE function) and the ``average_fading`` BER model.

Known gap: being myopic, it maximises each round's eq. 22a utility (the env's
reward, and the world's ``RoundRecord.utility``), where it beats the static
baseline; on the world's per-user end-to-end utility over all rounds
(``UserRecord.utility``: QoE of the total latency with base ``1 + total images``)
it does not beat static on ``scenarios/three_users.yaml`` (6 seeds: -1.32 vs -0.92).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import optimize, special

from sim.backends import build_service_models
from sim.config import Scenario
from sim.decisions import AgentContext, Provision, ProvisioningAgent, ProvisioningObservation
from sim.generation.surrogate import typical_image_bits
from sim.model import service
from sim.model.qoe import cost, expected_user_utility
from sim.model.quality import N_STRATEGIES, SCORE_MAX
from sim.model.service import ServiceModels

_LOG_TABLE_POINTS = 25  # exact table points in log P from P_total * 1e-4 to P_total


def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E[f(Z)], Z ~ N(0, 1)."""
    x, w = np.polynomial.hermite.hermgauss(n)
    return math.sqrt(2.0) * x, w / w.sum()


def prompt_strategy_of(scenario: Scenario | None) -> int:
    """The strategy the scenario's prompt agent uses (raw -> 0, empirical -> its strategy), else 6."""
    if scenario is None:
        return 6
    pa = scenario.prompt_agent
    if pa.name == "raw":
        return 0
    if pa.name == "empirical":
        return int(pa.params.get("strategy", 6))
    return 6


class OracleProvisioning(ProvisioningAgent):
    """Best ``(N, P)`` for the expected one-round utility under the exact models (module docstring).

    Parameters: ``n_max`` (default ``context.max_images``); ``strategy`` (prompt
    strategy assumed; default: 0 for the ``raw`` prompt agent, the
    ``empirical`` agent's strategy, else 6); ``image_bits`` (default
    :func:`sim.generation.surrogate.typical_image_bits`); quadrature sizes ``prompt_nodes``,
    ``shadow_nodes``, ``score_nodes``; ``power_grid`` (grid steps of the power
    search); ``max_combos`` (exhaustive search limit over ``N``).
    """

    name = "oracle"
    per_observation = True

    def __init__(
        self,
        context: AgentContext,
        rng: np.random.Generator,
        n_max: int | None = None,
        strategy: int | None = None,
        image_bits: float | None = None,
        prompt_nodes: int = 12,
        shadow_nodes: int = 16,
        score_nodes: int = 48,
        power_grid: int = 100,
        max_combos: int = 4096,
        polish: bool = True,
    ):
        super().__init__(context, rng)
        scenario = context.scenario
        if not isinstance(scenario, Scenario):
            raise ValueError("the oracle needs the scenario in its AgentContext (it models the world)")
        self.n_max = int(n_max or context.max_images)
        if not 1 <= self.n_max <= context.max_images:
            raise ValueError(f"n_max must be in 1..{context.max_images}, got {n_max}")
        self.strategy = prompt_strategy_of(scenario) if strategy is None else int(strategy)
        if not 0 <= self.strategy < N_STRATEGIES:
            raise ValueError(f"strategy must be in 0..{N_STRATEGIES - 1}, got {strategy}")
        self.image_bits = float(image_bits) if image_bits is not None else typical_image_bits(scenario)
        # The world's (or the environment's) own models; built from the scenario only when run standalone.
        self.models: ServiceModels = context.models if context.models is not None else build_service_models(scenario)
        self.channel = self.models.channel
        self.quality = self.models.quality
        self.params = self.models.qoe
        #: Each MASP's GPU count (its queue's rule), by name: the models are the first MASP's.
        self._gpus = {m.name: int(m.gpus) for m in scenario.masps}
        self.power_grid = int(power_grid)
        self.max_combos = int(max_combos)
        self.polish = bool(polish)
        if self.power_grid < 4:
            raise ValueError("power_grid must be >= 4")
        self._u, self._wu = _gauss_hermite(int(prompt_nodes))
        self._x, self._wx = _gauss_hermite(int(shadow_nodes))
        t, wt = np.polynomial.legendre.leggauss(int(score_nodes))
        self._t, self._wt = (t + 1.0) / 2.0, wt / 2.0  # on [0, 1]

    # -- expected per-user terms -------------------------------------------------------------------

    def quality_terms(
        self, complexity: float, distance_m: float, threshold: float, power_w
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(E[q], E[max(q, 0)], P(satisfied))`` for ``N = 1..n_max`` (rows) at each power (columns).

        ``q`` is the quality term ``ln(max(B, floor) / thr)`` of the best received
        score ``B``. ``E[max(q, 0)]`` is needed by the gated QoE only (it is
        ``E[q]`` again for the other forms, unused).
        """
        qm, ch = self.quality, self.channel
        p = np.atleast_1d(np.asarray(power_w, dtype=float))
        mu = float(qm.mean_score(complexity, self.strategy))
        sd = qm.image_sd
        floor, thr = self.params.quality_floor, float(threshold)
        shadow = ch.shadowing_sigma_db * self._x  # (X,)
        ber = np.asarray(ch.ber_given_shadowing(p[:, None], distance_m, shadow[None, :]), dtype=float)  # (P, X)
        ret = np.asarray(qm.retention(ber, self.image_bits), dtype=float)
        pu = np.asarray(qm.p_undecodable(ber, self.image_bits), dtype=float)
        mu_u = mu + qm.prompt_sd * self._u  # (U,)
        top = SCORE_MAX * ret  # (P, X)
        wq = (self._wx[:, None] * self._wu[None, :])  # (X, U)
        n = np.arange(1, self.n_max + 1)

        def expected_log(lower: float) -> np.ndarray:
            """``E[ln(max(B, lower) / thr)]`` = ``ln(lower / thr) + int_lower^top (1 - F(b)^N) / b db`` (N rows)."""
            width = np.maximum(top - lower, 0.0)  # score integral nodes: b in [lower, top] (empty when top <= lower)
            b = lower + width[..., None] * self._t  # (P, X, B)
            z = (b[:, :, None, :] / ret[:, :, None, None] - mu_u[None, None, :, None]) / sd  # (P, X, U, B)
            f = pu[:, :, None, None] + (1 - pu[:, :, None, None]) * special.ndtr(z)
            log_f = np.log(np.maximum(f, 1e-300))
            kernel = (width[..., None] * self._wt / b)[:, :, None, :]  # (P, X, 1, B): d b / b
            out = np.empty((len(n), len(p)))
            for k, nk in enumerate(n):
                integral = np.sum((1.0 - np.exp(nk * log_f)) * kernel, axis=-1)  # (P, X, U)
                out[k] = math.log(lower / thr) + np.einsum("pxu,xu->p", integral, wq)
            return out

        eh = expected_log(floor)
        eh_pos = expected_log(max(floor, thr)) if self.params.form == "gated" else eh
        z_thr = (thr / ret[:, :, None] - mu_u[None, None, :]) / sd  # (P, X, U)
        f_thr = np.where(thr > top[:, :, None], 1.0, pu[:, :, None] + (1 - pu[:, :, None]) * special.ndtr(z_thr))
        ps = np.stack([1.0 - np.einsum("pxu,xu->p", f_thr**nk, wq) for nk in n])
        return eh, eh_pos, ps

    def _gpu_done(self, n_images: np.ndarray, masp: str) -> np.ndarray:
        """When each user's last image leaves the GPUs of MASP ``masp`` (FIFO, user by user)."""
        gpus = self._gpus.get(masp, self.models.gpus)
        return service.gpu_completion_times(n_images, gpus, self.models.inference_time_s)

    def _latency(self, n_images: np.ndarray, power_w: np.ndarray, distances: np.ndarray, masp: str) -> np.ndarray:
        """Latency per user (broadcasts over leading axes of ``n_images``): FIFO GPU time on MASP ``masp`` +
        median-SNR transmission."""
        gen = self._gpu_done(n_images, masp)
        tx = self._median_delay(power_w, distances)
        return np.where(n_images > 0, gen + tx, 0.0)

    def _median_delay(self, power_w, distances) -> np.ndarray:
        """Transmission delay at the median SNR (no shadowing, mean fading), by the world's round rules."""
        snr = np.asarray(self.channel.snr(power_w, distances, 0.0, self.channel.mean_fading_gain), dtype=float)
        return service.delivery_delay_s(service.transmission_time_s(self.channel, self.image_bits, snr, power_w))

    # -- expected utility --------------------------------------------------------------------------

    def expected_utility(self, obs: ProvisioningObservation, provision: Provision) -> float:
        """Expected eq. 22a utility (with penalties) of ``provision`` for the users of ``obs``."""
        n = np.asarray(provision.n_images, dtype=int)
        requested = np.asarray(provision.power_w, dtype=float)
        p_total = float(obs.p_total_w)
        power, violation = service.transmitted_powers(requested, p_total)
        d = np.asarray(obs.distances_m, dtype=float)
        thr = np.asarray(obs.thresholds, dtype=float)
        latency = self._latency(n, power, d, obs.masp)
        value = 0.0
        for i in range(obs.n_users):
            if n[i] >= 1:
                if n[i] > self.n_max:
                    raise ValueError(f"n_images {n[i]} above the oracle's n_max {self.n_max}")
                eh, eh_pos, ps = (float(t[n[i] - 1, 0]) for t in self.quality_terms(
                    float(obs.complexities[i]), d[i], thr[i], power[i]))
                lat, n_i = latency[i], n[i]
            else:  # no image: best score 0, a violation; the world's latency is then 0
                eh = eh_pos = math.log(self.params.quality_floor / thr[i])
                ps, lat, n_i = 0.0, 0.0, 1
            c = float(cost(n[i], requested[i], self.params))
            value += float(expected_user_utility(lat, n_i, eh, eh_pos, c, 1.0 - ps, self.params))
        if violation:
            value -= self.params.penalty * obs.n_users
        return float(value)

    # -- search ------------------------------------------------------------------------------------

    def _objective_tables(self, obs: ProvisioningObservation, grid: np.ndarray):
        """Per user: E[quality term] and P(sat) on ``grid`` (N rows), interpolated in log P from an exact table."""
        p_total = float(obs.p_total_w)
        table_p = p_total * np.logspace(-4, 0, _LOG_TABLE_POINTS)
        tables = []
        lg = np.log(np.maximum(grid, table_p[0]))
        for i in range(obs.n_users):
            terms = self.quality_terms(
                float(obs.complexities[i]), float(obs.distances_m[i]), float(obs.thresholds[i]), table_p
            )
            tables.append([np.stack([np.interp(lg, np.log(table_p), row) for row in t]) for t in terms])
        eh, eh_pos, ps = (np.stack([t[k] for t in tables]) for k in range(3))
        return eh, eh_pos, ps  # each (Q, N, G)

    def _combo_values(self, combos: np.ndarray, eh, eh_pos, ps, grid, obs) -> tuple[np.ndarray, np.ndarray]:
        """Best grid value and grid power indices for each N combination (rows of ``combos``)."""
        prm = self.params
        q = obs.n_users
        d = np.asarray(obs.distances_m, dtype=float)
        g = len(grid)
        # latency: FIFO GPU completion (C, Q) + transmission at the median SNR of each grid power (Q, G)
        gen = self._gpu_done(combos, obs.masp)
        tx = self._median_delay(grid[None, :], d[:, None])
        latency = gen[..., None] + tx[None]  # (C, Q, G)
        users = np.arange(q)
        e = eh[users[None, :], combos - 1]  # (C, Q, G)
        e_pos = eh_pos[users[None, :], combos - 1]
        s = ps[users[None, :], combos - 1]
        f = expected_user_utility(latency, combos[..., None], e, e_pos, cost(combos[..., None], grid, prm), 1.0 - s, prm)
        f[..., 0] = -np.inf  # no zero power: it never helps the expected utility but confuses the latency model
        # max-plus DP over users on the budget grid (index = grid steps used)
        best = f[:, 0, :].copy()
        running = np.maximum.accumulate(best, axis=-1)
        arg_running = np.zeros_like(best, dtype=int)
        # keep the argmax of the prefix max for user 0
        idx = np.arange(g)
        am = np.where(best == running, idx, 0)
        arg_running = np.maximum.accumulate(am, axis=-1)
        values, args = running, [arg_running]
        for i in range(1, q):
            # V_i(b) = max_{k <= b} f_i(k) + V_{i-1}(b - k)
            k = idx[:, None]
            bsum = idx[None, :]
            prev_idx = bsum - k  # (k, b)
            valid = prev_idx >= 0
            cand = np.where(valid[None], f[:, i, :, None] + np.take(values, np.clip(prev_idx, 0, g - 1), axis=-1), -np.inf)
            kbest = np.argmax(cand, axis=1)  # (C, b)
            values = np.take_along_axis(cand, kbest[:, None, :], axis=1)[:, 0, :]
            args.append(kbest)
        # backtrack from the full budget
        c = len(combos)
        out = np.zeros((c, q), dtype=int)
        budget = np.full(c, g - 1)
        rows = np.arange(c)
        for i in range(q - 1, 0, -1):
            k = args[i][rows, budget]
            out[:, i] = k
            budget = budget - k
        out[:, 0] = args[0][rows, budget]
        return values[:, -1], out

    def decide(self, obs: ProvisioningObservation) -> Provision:
        q = obs.n_users
        p_total = float(obs.p_total_w)
        g = self.power_grid
        grid = np.linspace(0.0, p_total, g + 1)
        eh, eh_pos, ps = self._objective_tables(obs, grid)
        n_range = np.arange(1, self.n_max + 1)
        if self.n_max**q <= self.max_combos:
            combos = np.array(list(itertools.product(n_range, repeat=q)), dtype=int)
            values, idx = self._chunked(combos, eh, eh_pos, ps, grid, obs)
            j = int(np.argmax(values))
            n_best, p_idx = combos[j], idx[j]
        else:  # coordinate ascent from the best uniform N
            uniform = np.repeat(n_range[:, None], q, axis=1)
            values, idx = self._chunked(uniform, eh, eh_pos, ps, grid, obs)
            j = int(np.argmax(values))
            n_best, p_idx, v_best = uniform[j].copy(), idx[j], values[j]
            for _ in range(4):
                improved = False
                for i in range(q):
                    cands = np.repeat(n_best[None, :], self.n_max, axis=0)
                    cands[:, i] = n_range
                    values, idx = self._chunked(cands, eh, eh_pos, ps, grid, obs)
                    k = int(np.argmax(values))
                    if values[k] > v_best + 1e-12:
                        n_best, p_idx, v_best, improved = cands[k].copy(), idx[k], values[k], True
                if not improved:
                    break
        power = grid[p_idx]
        decision = Provision(n_best, power)
        if self.polish and q > 0:
            decision = self._polish(obs, decision)
        return decision

    def _chunked(self, combos, eh, eh_pos, ps, grid, obs, chunk: int = 64):
        vals, idxs = [], []
        for s in range(0, len(combos), chunk):
            v, i = self._combo_values(combos[s : s + chunk], eh, eh_pos, ps, grid, obs)
            vals.append(v)
            idxs.append(i)
        return np.concatenate(vals), np.concatenate(idxs)

    def _polish(self, obs: ProvisioningObservation, start: Provision) -> Provision:
        """SLSQP on the exact expected utility, from the grid optimum; kept only if it is better."""
        n = start.n_images
        p_total = float(obs.p_total_w)
        lo = p_total * 1e-6

        def neg(p):
            # Within the budget (SLSQP's constraint), the objective; a finite-difference step just past it is
            # scaled back onto it instead of meeting eq. 22's budget penalty, a jump the gradient cannot use.
            p = np.maximum(p, lo)
            if service.exceeds_budget(p, p_total):
                p = service.transmitted_powers(p, p_total)[0]
            return -self.expected_utility(obs, Provision(n, p))

        x0 = np.maximum(start.power_w, lo)
        f0 = neg(x0)
        try:
            res = optimize.minimize(
                neg,
                x0,
                method="SLSQP",
                bounds=[(lo, p_total)] * obs.n_users,
                constraints=[{"type": "ineq", "fun": lambda p: p_total - np.sum(p)}],
                options={"maxiter": 50, "ftol": 1e-9},
            )
        except (ValueError, FloatingPointError):  # pragma: no cover - keep the grid optimum
            return Provision(n, x0)
        x = np.clip(res.x, lo, p_total)
        if x.sum() > p_total:
            x = x * (p_total / x.sum())
        return Provision(n, x) if neg(x) < f0 else Provision(n, x0)
