"""Prompt policies: split, the expert of D, evaluation, GAIL/PPO training, and a learned policy in the world."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sim.backends import AgentError, build_quality_model
from sim.config import parse_scenario
from sim.dataset.demonstrations import build_demo_dataset
from sim.model.quality import prompt_complexity
from sim.registry import PROMPT_AGENTS
from sim.rl.prompt_env import prompt_observation
from sim.rl.prompt_evaluation import baseline_policy, evaluate_policies
from sim.rl.prompt_expert import expert_table
from sim.rl.prompt_training import (
    DemoExpert,
    PromptTrainingError,
    evaluate_prompt_policy,
    expert_pairs,
    scenario_prompts,
    split_prompts,
)

SC = parse_scenario({"name": "prompt_training_test", "generator": {"image_size": 32}})
DEMO_PROMPTS = [
    "A beach with a boat",
    "A dog with a colorful collar",
    "A castle with a dragon",
    "A busy night market in an old town, with lanterns, food stalls, a street musician and a cat on a crate",
]
BITS = 8_000.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demonstration dataset D from the surrogate generator (about 1 s)."""
    path = tmp_path_factory.mktemp("demo") / "D.parquet"
    build_demo_dataset(SC, path, prompts=DEMO_PROMPTS, seeds_per_strategy=2, power_levels_w=(0.1, 0.8), quiet=True)
    return path


def test_split_is_deterministic_stratified_and_disjoint():
    prompts = scenario_prompts(SC)
    a, b, c = split_prompts(prompts, 32, 0), split_prompts(prompts, 32, 0), split_prompts(prompts, 32, 5)
    assert a == b and a != c
    assert len(a.train) == 32 and len(a.held_out) == len(prompts) - 32
    assert set(a.train) | set(a.held_out) == set(prompts) and not set(a.train) & set(a.held_out)
    # stratified: the training prompts span the complexity range like the whole set
    cx = sorted(prompt_complexity(p) for p in a.train)
    assert cx[0] == 0.0 and cx[-1] == 1.0
    assert abs(np.mean(cx) - np.mean([prompt_complexity(p) for p in prompts])) < 0.05
    with pytest.raises(PromptTrainingError, match="n_train"):
        split_prompts(prompts, len(prompts))


def test_expert_picks_the_best_mean_strategy_per_prompt_and_power():
    rows = []
    # prompt A: at 0.1 W strategy 2 is best on average (though 1 has the single best seed); at 0.8 W strategy 6.
    for power, scores in ((0.1, {0: [4.0, 4.0], 1: [9.0, 1.0], 2: [6.0, 5.0]}),
                          (0.8, {0: [6.0, 6.0], 1: [6.0, 6.5], 6: [7.0, 7.0]})):
        for s, vals in scores.items():
            rows += [{"prompt": "A", "power_w": power, "strategy": s, "seed_index": k, "received_score": v,
                      "generation_score": 5.0} for k, v in enumerate(vals)]
    # prompt B: a tie between 3 and 4 goes to the lower id
    rows += [{"prompt": "B", "power_w": 0.1, "strategy": s, "seed_index": 0, "received_score": 5.0,
              "generation_score": 5.0} for s in (4, 3)]
    frame = pd.DataFrame(rows)
    table = expert_table(frame)
    got = {(r.prompt, r.power_w): (r.strategy, r.mean_score) for r in table.itertuples()}
    assert got == {("A", 0.1): (2, 5.5), ("A", 0.8): (6, 7.0), ("B", 0.1): (3, 5.0)}
    assert table.set_index(["prompt", "power_w"]).loc[("A", 0.1), "margin"] == pytest.approx(0.5)
    expert = DemoExpert(table)
    assert expert.covers("a") and not expert.covers("C")
    assert [expert.action("A", p) for p in (0.05, 0.2, 0.3, 5.0)] == [2, 2, 6, 6]  # nearest level in log power
    # pooled over powers: A's means are 0: 5.0, 1: 5.625, 2: 5.5, 6: 7.0 -> 6 at every level
    pooled = expert_table(frame, pool_powers=True)
    assert pooled.loc[pooled["prompt"] == "A", "strategy"].tolist() == [6, 6]
    with pytest.raises(PromptTrainingError, match="received_score"):
        expert_table(frame.drop(columns="received_score"))
    with pytest.raises(PromptTrainingError, match="no demonstration dataset"):
        expert_table("nowhere/D.parquet")


def test_expert_pairs_from_a_surrogate_dataset(demo):
    expert = DemoExpert.from_demonstrations(demo)
    assert sorted(expert.prompts) == sorted(DEMO_PROMPTS)
    means = pd.read_parquet(demo).groupby(["prompt", "power_w", "strategy"])["received_score"].mean()
    for prompt in DEMO_PROMPTS:
        for power in (0.1, 0.8):
            assert expert.action(prompt, power) == int(means.loc[(prompt, power)].idxmax())
        obs, actions = expert_pairs(expert, SC, [prompt], episodes_per_prompt=3, seed=0, image_bits=BITS,
                                    powers_w=(0.1, 0.8), history_len=2)
        assert obs.shape[1] == 7 * 2 + 12 + 1 and len(obs) == len(actions) >= 3
        powers = obs[:, -1] * 0.8
        assert actions.tolist() == [expert.action(prompt, p) for p in powers]
        first = ~obs[:, :14].any(axis=1)
        assert first.sum() == 3  # one first round per episode, later rounds carry the history
        later = np.flatnonzero(~first)
        assert all(obs[i, :7].argmax() == actions[i - 1] for i in later)
    with pytest.raises(PromptTrainingError, match="no demonstrations"):
        expert_pairs(expert, SC, ["A garden with a fountain"], image_bits=BITS)


def test_evaluation_of_baselines_is_paired_and_has_cis(demo):
    expert = DemoExpert.from_demonstrations(demo)
    quality = build_quality_model(SC)
    policies = {name: baseline_policy(name, seed=0, expert=expert, quality=quality)
                for name in ("raw", "random", "empirical", "expert", "model")}
    table = evaluate_policies(policies, SC, DEMO_PROMPTS, episodes_per_prompt=5, seed=0, expert=expert,
                              image_bits=BITS, powers_w=(0.1, 0.8)).set_index("policy")
    assert table.loc["expert", "agreement"] == 1.0 and table.loc["model", "model_agreement"] == 1.0
    assert json.loads(table.loc["raw", "action_shares"]) == {"0": 1.0}
    assert json.loads(table.loc["empirical", "action_shares"]) == {"6": 1.0}
    assert (table["episodes"] == 20).all()
    for col in ("score", "success", "agreement", "rounds", "served"):
        assert (table[f"{col}_ci_low"] <= table[col] + 1e-12).all() and (table[col] <= table[f"{col}_ci_high"] + 1e-12).all()
    assert table["success"].between(0, 1).all() and table["rounds"].between(1, 5).all()
    # the same seeds for every policy: raw's agreement is the share of first rounds where the expert picks 0
    ev_raw = evaluate_prompt_policy(policies["raw"], SC, DEMO_PROMPTS, 5, 0, expert, "raw", image_bits=BITS,
                                    powers_w=(0.1, 0.8)).episodes
    ev_exp = evaluate_prompt_policy(policies["expert"], SC, DEMO_PROMPTS, 5, 0, expert, "expert", image_bits=BITS,
                                    powers_w=(0.1, 0.8)).episodes
    assert ev_raw[["seed", "threshold", "power_w"]].equals(ev_exp[["seed", "threshold", "power_w"]])
    assert table.loc["raw", "agreement"] == pytest.approx((ev_exp["action"] == 0).mean())
    # without an expert covering the prompts, agreement is NaN (not a made-up number)
    ev = evaluate_prompt_policy(policies["raw"], SC, ["A garden with a fountain"], 2, 0, expert, image_bits=BITS).summary
    assert math.isnan(ev["agreement"]) and np.isfinite(ev["model_agreement"])


# -- training (needs the learn extra) ------------------------------------------------------------


@pytest.fixture(scope="module")
def learn(one_torch_thread):
    pytest.importorskip("torch")
    pytest.importorskip("stable_baselines3")


SMALL_PPO = {"n_steps": 128, "batch_size": 32, "n_epochs": 2}
SMALL_GAIL = {"n_steps": 128, "batch_size": 32, "n_epochs": 2, "disc_batch_size": 32, "bc_epochs": 2}


def test_ppo_training_writes_curve_and_a_checkpoint_the_world_runs(tmp_path, demo, learn):
    from sim.rl.checkpoints import load_prompt_checkpoint
    from sim.rl.prompt_evaluation import checkpoint_policy
    from sim.rl.prompt_training import train_prompt_policy
    from sim.world.simulation import World

    result = train_prompt_policy(SC, "ppo", 256, seed=0, out=tmp_path, train_prompts=DEMO_PROMPTS[:3],
                                 eval_prompts=DEMO_PROMPTS[3:], demo=demo, eval_every=128, eval_episodes_per_prompt=4,
                                 hyperparameters=SMALL_PPO, quiet=True)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["steps"].tolist() == [128, 256] and result.steps == 256
    for col in ("score", "score_ci_low", "score_ci_high", "success", "agreement", "model_agreement", "train_time_s"):
        assert np.isfinite(curve[col]).all(), col
    meta, model = load_prompt_checkpoint(tmp_path / "checkpoints" / "latest")
    assert meta["kind"] == "prompt" and meta["algorithm"] == "ppo" and meta["steps"] == 256
    assert meta["observation"] == {"embedding": "features", "history_len": 3, "power_scale_w": 0.8}
    assert (tmp_path / "checkpoints" / "step00000256" / "checkpoint.json").is_file()
    assert json.loads((tmp_path / "split.json").read_text())["held_out"] == DEMO_PROMPTS[3:]
    # the checkpoint evaluates to the curve's last point
    ev = evaluate_prompt_policy(checkpoint_policy(tmp_path / "checkpoints" / "latest"), SC, DEMO_PROMPTS[3:], 4, 0,
                                DemoExpert.from_demonstrations(demo), **meta["env"]).summary
    assert ev["score"] == pytest.approx(curve["score"].iloc[-1])

    # by name in the world, choosing through the same observation builder
    assert "learned" in PROMPT_AGENTS
    world_sc = parse_scenario({
        "name": "prompt_learned_world", "generator": {"image_size": 32},
        "arrivals": {"process": "batch", "n_users": 4},
        "users": {"prompts": DEMO_PROMPTS, "threshold": {"low": 9.5, "high": 9.9}},
        "service": {"max_rounds": 3},
        "prompt_agent": {"name": "learned", "params": {"checkpoint": str(tmp_path / "checkpoints" / "latest")}},
    })
    result = World(world_sc, seed=0).run()
    rounds = pd.DataFrame(result.rounds).sort_values(["user_id", "round_index"])
    assert len(result.users) == 4 and (rounds.groupby("user_id").size() > 1).any()
    from sim.rl.prompt_env import ObservationSpec

    spec = ObservationSpec.from_dict(meta["observation"])
    for user_id, g in rounds.groupby("user_id"):
        history = []
        for r in g.itertuples():
            vector = prompt_observation(spec, DEMO_PROMPTS[user_id], r.power_w, history)
            assert r.strategy == int(model.predict(vector, deterministic=True)[0])
            history.append(r.strategy)


def test_gail_training_builds_demonstrations_when_none_are_given(tmp_path, learn):
    from sim.rl.prompt_training import train_prompt_policy

    result = train_prompt_policy(SC, "gail", 128, seed=1, out=tmp_path, train_prompts=DEMO_PROMPTS[:2],
                                 eval_prompts=DEMO_PROMPTS[2:], hyperparameters=SMALL_GAIL,
                                 eval_episodes_per_prompt=2, expert_episodes_per_prompt=2, quiet=True)
    assert (tmp_path / "demo.parquet").is_file()
    assert sorted(pd.read_parquet(tmp_path / "demo.parquet")["prompt"].unique()) == sorted(DEMO_PROMPTS[:2])
    latest = tmp_path / "checkpoints" / "latest"
    assert (latest / "discriminator.pt").is_file() and (latest / "model.zip").is_file()
    meta = json.loads((latest / "checkpoint.json").read_text())
    assert meta["algorithm"] == "gail" and meta["demo"].endswith("demo.parquet")
    assert meta["hyperparameters"]["bc_epochs"] == 2
    curve = result.curve
    assert {"disc_loss", "disc_expert_accuracy", "disc_policy_accuracy", "disc_reward"} <= set(curve.columns)
    # held-out prompts are outside D: agreement with the D expert is NaN, the model expert's is measured
    assert math.isnan(curve["agreement"].iloc[-1]) and np.isfinite(curve["model_agreement"].iloc[-1])


def test_bad_input_is_refused_clearly(tmp_path, demo):
    from sim.rl.prompt_training import train_prompt_policy
    from sim.world.simulation import World

    with pytest.raises(PromptTrainingError, match="unknown algorithm"):
        train_prompt_policy(SC, "bc", 10, 0, tmp_path)
    with pytest.raises(PromptTrainingError, match="no demonstration dataset"):
        train_prompt_policy(SC, "gail", 10, 0, tmp_path, train_prompts=DEMO_PROMPTS[:2], demo=tmp_path / "none.parquet")
    (tmp_path / "prov").mkdir()
    (tmp_path / "prov" / "checkpoint.json").write_text(json.dumps({"algorithm": "sac"}))
    for checkpoint, message in ((str(tmp_path / "missing"), "not a prompt-policy checkpoint"),
                                (str(tmp_path / "prov"), "holds a sac checkpoint, not a prompt policy"),
                                ("", "needs params.checkpoint")):
        sc = parse_scenario({"name": "bad", "prompt_agent": {"name": "learned", "params": {"checkpoint": checkpoint}}})
        with pytest.raises(AgentError, match=message):
            World(sc, seed=0)


def test_gail_can_imitate_the_model_optimum_instead_of_d(tmp_path, demo, learn):
    """expert_source="model": the demonstrations are the quality model's optimum, not D's noisy argmax."""
    from sim.rl.prompt_training import ModelExpert, train_prompt_policy

    with pytest.raises(PromptTrainingError, match="expert_source"):
        train_prompt_policy(SC, "gail", 10, 0, tmp_path, demo=demo, expert_source="oracle")
    train_prompt_policy(SC, "gail", 128, seed=1, out=tmp_path, train_prompts=DEMO_PROMPTS[:2],
                        eval_prompts=DEMO_PROMPTS[2:], demo=demo, hyperparameters=SMALL_GAIL,
                        eval_episodes_per_prompt=1, expert_episodes_per_prompt=2, expert_source="model", quiet=True)
    meta = json.loads((tmp_path / "checkpoints" / "latest" / "checkpoint.json").read_text())
    assert meta["expert_source"] == "model"
    from sim.rl.algos.gail import GAIL

    model = GAIL.load(tmp_path / "checkpoints" / "latest")
    expert = ModelExpert(build_quality_model(SC))
    wanted = {expert.action(p) for p in DEMO_PROMPTS[:2]}
    assert set(np.unique(model.expert_actions)) == wanted  # the pairs it was trained on are the model's choices
