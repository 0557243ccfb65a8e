"""A suite of bad scenarios: each is refused by `validate` (and so by `run`) in one line that names its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sim.config import ScenarioError, load_scenario
from sim.validation import scenario_problems

ROOT = Path(__file__).resolve().parents[1]

#: (case, YAML text, a piece of the key path or message the one line must contain)
NUMBERS = {
    "arrivals.rate_per_s": "arrivals: {process: poisson, rate_per_s: %s}",
    "masps[0].p_total_w": "masps: [{name: m, p_total_w: %s}]",
    "masps[0].gpus": "masps: [{name: m, gpus: %s}]",
    "channel.noise_power_w": "channel: {noise_power_w: %s}",
    "channel.path_loss_exponent": "channel: {path_loss_exponent: %s}",
    "channel.bandwidth_hz": "channel: {bandwidth_hz: %s}",
    "generator.inference_time_s": "generator: {inference_time_s: %s}",
    "qoe.max_latency_s": "qoe: {max_latency_s: %s}",
    "qoe.eta_q": "qoe: {eta_q: %s}",
    "qoe.cost_per_image": "qoe: {cost_per_image: %s}",
    "users.distance_m.low": "users: {distance_m: {low: %s, high: 100.0}}",
    "service.max_rounds": "service: {max_rounds: %s}",
}
#: Values no number field takes: booleans, strings, NaN and infinities.
NOT_NUMBERS = ("yes", "true", "'3'", "abc", ".nan", ".inf", "-.inf")
CASES = [(f"{key} = {value}", "name: s\n" + template % value + "\n", key)
         for key, template in NUMBERS.items() for value in NOT_NUMBERS]
CASES += [
    ("p_total_w too large for finite sums", "name: s\nmasps: [{name: m, p_total_w: 1.0e+308}]\n", "p_total_w"),
    ("bandwidth of 1e-308 Hz", "name: s\nchannel: {bandwidth_hz: 1.0e-308}\n", "channel.bandwidth_hz"),
    ("inference time 1e308 s", "name: s\ngenerator: {inference_time_s: 1.0e+308}\n", "generator.inference_time_s"),
    ("arrival rate 1e308", "name: s\narrivals: {process: poisson, rate_per_s: 1.0e+308}\n", "arrivals.rate_per_s"),
    ("huge noise power", "name: s\nchannel: {noise_power_w: 1.0e+30}\n", "channel.noise_power_w"),
    ("eta_c 1e300", "name: s\nqoe: {eta_c: 1.0e+300}\n", "qoe.eta_c"),
    ("negative power", "name: s\nmasps: [{name: m, p_total_w: -1}]\n", "p_total_w"),
    ("zero GPUs", "name: s\nmasps: [{name: m, gpus: 0}]\n", "gpus"),
    ("fractional users", "name: s\narrivals: {n_users: 2.5}\n", "arrivals.n_users"),
    ("duplicate top-level key", "name: s\nname: t\n", "duplicate key 'name'"),
    ("duplicate section", "name: s\nqoe: {eta_q: 1}\nqoe: {eta_c: 1}\n", "duplicate key 'qoe'"),
    ("duplicate nested key", "name: s\nqoe: {eta_q: 1, eta_q: 2}\n", "duplicate key 'eta_q'"),
    ("name with a path", "name: ../../../x\n", "name"),
    ("name with a slash", "name: a/b\n", "name"),
    ("empty name", "name: ''\n", "name"),
    ("hidden name", "name: .hidden\n", "name"),
    ("unknown top-level key", "name: s\nchanel: {}\n", "chanel"),
    ("unknown nested key", "name: s\nqoe: {eta: 1}\n", "qoe.eta"),
    ("misspelled provisioning agent", "name: s\nprovisioning_agent: {name: statik}\n", "statik"),
    ("misspelled prompt agent", "name: s\nprompt_agent: {name: rawr}\n", "rawr"),
    ("unknown agent parameter", "name: s\nprovisioning_agent: {name: static, params: {n_imagez: 3}}\n",
     "provisioning_agent: "),
    ("bad agent parameter value", "name: s\nprovisioning_agent: {name: static, params: {n_images: 0}}\n",
     "provisioning_agent: "),
    ("prompt agent takes no parameters", "name: s\nprompt_agent: {name: raw, params: {x: 1}}\n", "prompt_agent: "),
    ("missing checkpoint", "name: s\nprovisioning_agent: {name: learned, params: {checkpoint: /no/such/dir}}\n",
     "provisioning_agent: "),
    ("compare agent with bad parameters",
     "name: s\ncompare: {provisioning_agents: [{label: x, name: static, params: {n_images: -1}}]}\n",
     "compare.provisioning_agents[0]"),
    ("duplicate compare labels",
     "name: s\ncompare: {provisioning_agents: [{label: x, name: static}, {label: x, name: random}]}\n",
     "labels must be unique"),
    ("missing prompt set", "name: s\nusers: {prompt_set: no_such_prompts.yaml}\n", "users.prompt_set"),
    ("missing quality file", "name: s\nquality: {generation: no_such_quality.yaml}\n", "quality"),
    ("missing cache directory", "name: s\ngenerator: {backend: cache, cache: {dir: /no/such/cache}}\n",
     "generator.cache.dir"),
    ("an empty prompt", "name: s\nusers: {prompts: ['  ']}\n", "prompts[0] is empty"),
    ("threshold above 10", "name: s\nusers: {thresholds: [11.0]}\n", "users.thresholds"),
    ("two power budgets", "name: s\nmasps: [{name: a, p_total_w: 1.0}, {name: b, p_total_w: 2.0}]\n", "same p_total_w"),
    ("threshold of zero", "name: s\nusers: {thresholds: [0.0]}\n", "users.thresholds"),
    ("threshold range at zero", "name: s\nusers: {threshold: {low: 0.0, high: 0.0}}\n", "threshold range"),
    ("reversed range", "name: s\nusers: {distance_m: {low: 100.0, high: 50.0}}\n", "users.distance_m"),
    ("zero distance", "name: s\nusers: {distance_m: {low: 0.0, high: 50.0}}\n", "distance_m.low"),
    ("unknown channel model", "name: s\nchannel: {model: rayleigh_only}\n", "rayleigh_only"),
    ("unknown delivery", "name: s\nchannel: {delivery: pixels}\n", "channel.delivery"),
    ("unknown assessor", "name: s\nassessor: {backend: fidelty}\n", "fidelty"),
    ("unknown QoE form", "name: s\nqoe: {form: product}\n", "qoe"),
    ("duplicate MASP names", "name: s\nmasps: [{name: m}, {name: m}]\n", "MASP names must be unique"),
    ("no MASP", "name: s\nmasps: []\n", "masps"),
    ("a list for a section", "name: s\nqoe: [1, 2]\n", "qoe"),
    ("not a mapping", "- a\n- b\n", "(top level)"),
    ("empty file", "", "(top level)"),
    ("broken YAML", "name: s\nqoe: {eta_q: 1\n", "(yaml)"),
    ("tab indentation", "name: s\nqoe:\n\teta_q: 1\n", "(yaml)"),
    ("no name", "seed: 3\n", "name"),
    ("negative seed", "name: s\nseed: -1\n", "seed"),
    ("boolean seed", "name: s\nseed: true\n", "seed"),
]


def test_the_suite_is_large():
    assert len(CASES) >= 80


@pytest.mark.parametrize("case,text,needle", CASES, ids=[c[0] for c in CASES])
def test_a_bad_scenario_is_refused_with_its_key(tmp_path, case, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    try:
        problems = scenario_problems(load_scenario(path))
    except ScenarioError as err:
        problems = err.problems
    assert problems, f"{case}: accepted"
    assert any(needle in p for p in problems), f"{case}: {problems}"
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("case", ["p_total_w too large for finite sums", "misspelled provisioning agent",
                                  "missing checkpoint", "duplicate section", "name with a path", "qoe.eta_q = .inf"])
def test_validate_and_run_refuse_in_one_line_without_a_traceback(tmp_path, case):
    text = next(t for c, t, _ in CASES if c == case)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for command in (["validate", str(path)], ["run", str(path), "--quiet", "--out", str(tmp_path / "out")]):
        proc = subprocess.run([sys.executable, "-W", "error", "-m", "sim", *command], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)
        assert proc.returncode == 2, (command, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) >= 1 and all(line.startswith(str(path)) for line in lines), proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_numbers_in_exponent_form_are_numbers(tmp_path):
    # YAML 1.2 reads 1e-9 as a number; PyYAML (1.1) would give a string
    path = tmp_path / "ok.yaml"
    path.write_text("name: s\nchannel: {noise_power_w: 1e-9, bandwidth_hz: 2E+6}\n")
    scenario = load_scenario(path)
    assert scenario.channel.noise_power_w == 1e-9 and scenario.channel.bandwidth_hz == 2e6


def test_every_shipped_scenario_passes(tmp_path):
    for path in sorted((ROOT / "scenarios").rglob("*.yaml")):
        scenario = load_scenario(path)
        if scenario.generator.backend == "surrogate":
            assert scenario_problems(scenario) == [], path
        assert yaml.safe_load(path.read_text())["name"] == scenario.name


def test_a_channel_model_with_bad_parameters_names_the_channel(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: s\nchannel: {params: {wall_db: 3}}\n")
    problems = scenario_problems(load_scenario(path))
    assert len(problems) == 1 and problems[0].startswith("channel: ") and "wall_db" in problems[0]
