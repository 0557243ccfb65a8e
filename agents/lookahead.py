"""The lookahead oracle: a rollout policy over the users' remaining service rounds, with the world's exact models.

The one-round oracle (:mod:`agents.oracle`) maximises one epoch's expected
utility. The world scores each user's whole stay (``UserRecord.utility``: QoE of
its best score over all rounds, its total latency and total images, less its
total cost, less ``rho`` if it leaves unserved), and an unserved user comes back.
This agent looks ahead to the end of the stay:

1. **Candidates** for the current epoch: every uniform ``N`` from 1 to ``N_max``,
   each with five power splits from equal to one that equalises the users'
   mean SNR (:data:`SNR_BALANCE`; the equal split with ``N = 4`` is the paper's
   static baseline and the base policy), and the one-round oracle's decision
   (``one_round``).
2. **Rollouts.** For each candidate, ``rollouts`` futures of the current
   users are simulated with the world's round rules
   (:func:`sim.model.service.round_outcomes`: the FIFO GPU queue, the channel,
   the BER model, the fitted damage model) and models (``AgentContext.models``):
   the candidate now, then the **base policy** (``base_images`` images each,
   default 4, the paper's static baseline and the best uniform ``N`` on
   three_users; equal power split) in every later epoch
   until each user is served or out of rounds; an epoch lasts until its last
   image arrives, as in the world. Each user's final utility is computed with
   :func:`sim.model.qoe.user_utility` from its best score, latency since arrival,
   images and cost, as the world does.
3. **Choice**: the candidate with the highest mean total utility, all
   candidates scored on the same random draws (common random numbers). Since
   the base policy's own decision is a candidate, this is one step of policy
   improvement over the base policy.

What it knows: what any agent observes (prompts' complexities, distances,
thresholds, rounds done, best scores so far, time waited, images received),
plus the exact quality model (the prompt effect ``u ~ N(0, prompt_sd)`` and the
seed-to-seed spread, integrated by sampling; a user's past scores are not used
to infer its ``u``), channel, damage model and QoE. What it does not model:
users who arrive or wait elsewhere while this batch is served (with arrivals,
a longer epoch delays them; the rollouts leave that out), and the random
streams of the world (it samples its own from ``self.rng``).
"""

from __future__ import annotations

import numpy as np

from agents.oracle import OracleProvisioning, prompt_strategy_of
from sim.backends import build_service_models
from sim.config import Scenario
from sim.decisions import AgentContext, Provision, ProvisioningAgent, ProvisioningObservation
from sim.generation.surrogate import typical_image_bits
from sim.model import service
from sim.model.qoe import cost, qoe, user_utility
from sim.model.quality import N_STRATEGIES, SCORE_MAX, SCORE_MIN


#: Power splits among the candidates: ``P_i`` proportional to ``(1 / mean SNR_i at 1 W) ** e`` for each
#: exponent ``e``: 0 is the equal split, 1 gives every user the same mean SNR (far users get more power).
SNR_BALANCE = (0.0, 0.25, 0.5, 0.75, 1.0)


class LookaheadOracle(ProvisioningAgent):
    """Rollout lookahead over the remaining rounds (module docstring).

    Parameters: ``rollouts`` (futures per candidate, default 256); ``base_images``
    (the base policy's images per user and round, default 4); ``one_round``
    (add the one-round oracle's decision to the candidates, default True);
    ``strategy`` (prompt strategy assumed; default as the one-round oracle's);
    ``image_bits`` (default :func:`sim.generation.surrogate.typical_image_bits`).
    """

    name = "lookahead"

    def __init__(
        self,
        context: AgentContext,
        rng: np.random.Generator,
        rollouts: int = 256,
        base_images: int = 4,
        one_round: bool = True,
        strategy: int | None = None,
        image_bits: float | None = None,
    ):
        super().__init__(context, rng)
        scenario = context.scenario
        if not isinstance(scenario, Scenario):
            raise ValueError("the lookahead oracle needs the scenario in its AgentContext (it models the world)")
        if int(rollouts) < 1:
            raise ValueError(f"rollouts must be >= 1, got {rollouts}")
        self.rollouts = int(rollouts)
        self.strategy = prompt_strategy_of(scenario) if strategy is None else int(strategy)
        if not 0 <= self.strategy < N_STRATEGIES:
            raise ValueError(f"strategy must be in 0..{N_STRATEGIES - 1}, got {strategy}")
        self.models = context.models if context.models is not None else build_service_models(scenario)
        self.image_bits = float(image_bits) if image_bits is not None else typical_image_bits(scenario)
        self.max_rounds = int(scenario.service.max_rounds)
        self.n_max = int(context.max_images)
        if not 1 <= int(base_images) <= self.n_max:
            raise ValueError(f"base_images must be in 1..{self.n_max}, got {base_images}")
        self.base_images = int(base_images)
        self.one_round = (
            OracleProvisioning(context, rng, strategy=self.strategy, image_bits=self.image_bits) if one_round else None
        )

    # -- candidates ------------------------------------------------------------------------------------

    def candidates(self, obs: ProvisioningObservation) -> list[Provision]:
        """Every uniform ``N`` with each power split of :data:`SNR_BALANCE`, and the one-round oracle's decision."""
        q = obs.n_users
        inverse_gain = 10.0 ** (-np.asarray(obs.mean_snr_db_at_1w, dtype=float) / 10.0)
        out = []
        for exponent in SNR_BALANCE:
            weights = inverse_gain**exponent
            power = obs.p_total_w * weights / weights.sum()
            out += [Provision(np.full(q, n), power) for n in range(1, obs.max_images + 1)]
        if self.one_round is not None and q:
            out.append(self.one_round.decide(obs))
        return out

    # -- rollouts --------------------------------------------------------------------------------------

    def rollout_values(self, obs: ProvisioningObservation, candidates: list[Provision]) -> np.ndarray:
        """Mean total utility of the current users over their remaining stay, per candidate (same draws for all)."""
        m, q, k = self.rollouts, obs.n_users, obs.max_images
        epochs = max(1, self.max_rounds - int(np.min(obs.rounds_done, initial=0)))
        qm, ch = self.models.quality, self.models.channel
        rng = self.rng
        # the draws every candidate shares
        mu = np.asarray(qm.mean_score(np.asarray(obs.complexities, dtype=float), self.strategy), dtype=float)
        effect = qm.prompt_sd * rng.standard_normal((m, q))  # each user's unknown prompt effect
        z = rng.standard_normal((epochs, m, q, k))
        gen = np.clip(mu[None, None, :, None] + effect[None, :, :, None] + qm.image_sd * z, SCORE_MIN, SCORE_MAX)
        shadow = np.asarray(ch.draw_shadowing_db((epochs, m, q), rng), dtype=float)
        fading = np.asarray(ch.draw_fading_gain((epochs, m, q, k), rng), dtype=float)
        uniforms = rng.random((epochs, m, q, k))
        return np.array([self._rollout(obs, c, epochs, gen, shadow, fading, uniforms) for c in candidates])

    def _rollout(self, obs, first: Provision, epochs, gen, shadow, fading, uniforms) -> float:
        prm = self.models.qoe
        m, q = gen.shape[1], obs.n_users
        thr = np.broadcast_to(np.asarray(obs.thresholds, dtype=float), (m, q))
        d = np.asarray(obs.distances_m, dtype=float)
        active = np.ones((m, q), dtype=bool)
        best = np.tile(np.asarray(obs.best_scores, dtype=float), (m, 1))
        rounds = np.tile(np.asarray(obs.rounds_done, dtype=int), (m, 1))
        images = np.tile(np.asarray(obs.images_received, dtype=float), (m, 1))
        elapsed = np.tile(np.asarray(obs.waited_s, dtype=float), (m, 1))
        spent = np.zeros((m, q))
        total = np.zeros(m)
        for e in range(epochs):
            if not active.any():
                break
            if e == 0:
                n = np.where(active, first.n_images, 0)
                requested = np.where(active, first.power_w, 0.0)
            else:  # the base policy: base_images each, P_total split equally among the users still here
                n = np.where(active, self.base_images, 0)
                share = obs.p_total_w / np.maximum(active.sum(axis=1, keepdims=True), 1)
                requested = np.where(active, share, 0.0)
            sent = np.where(active, service.transmitted_powers(first.power_w, obs.p_total_w)[0], 0.0) if e == 0 else requested
            round_best, latency, _ = service.round_outcomes(
                self.models, n, sent, d, shadow[e], fading[e], gen[e], uniforms[e], self.image_bits
            )
            if e == 0 and service.exceeds_budget(first.power_w, obs.p_total_w):
                total -= prm.penalty * q  # eq. 22's penalty for a broken budget, as the world records it
            duration = latency.max(axis=1, keepdims=True)  # the epoch ends with its last image
            elapsed = np.where(active, elapsed + duration, elapsed)
            images = np.where(active, images + n, images)
            spent = np.where(active, spent + cost(n, requested, prm), spent)
            best = np.where(active, np.maximum(best, round_best), best)
            rounds = np.where(active, rounds + 1, rounds)
            satisfied = best >= thr
            leaving = active & (satisfied | (rounds >= self.max_rounds))
            if leaving.any():
                value = user_utility(qoe(best, thr, elapsed, np.maximum(images, 1.0), prm), spent, ~satisfied, prm)
                total += np.where(leaving, value, 0.0).sum(axis=1)
            active &= ~leaving
        return float(total.mean())

    def decide(self, obs: ProvisioningObservation) -> Provision:
        candidates = self.candidates(obs)
        values = self.rollout_values(obs, candidates)
        return candidates[int(np.argmax(values))]


__all__ = ["SNR_BALANCE", "LookaheadOracle"]
