"""The house rules: imports only go down, no cycles, one home per round rule, light RL imports, old paths alias."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "agents")


def _modules() -> dict[str, Path]:
    mods = {}
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Edges module -> project module it imports, module- and function-level imports alike."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module != "__future__":
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: use absolute imports (from sim... / from agents...)")
            for target in targets:
                resolved = _resolve(target, mods)
                if resolved and resolved != mod:
                    graph[mod].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_detector_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles (break them by moving the shared part down a layer): " + "; ".join(
        " <-> ".join(c) for c in found
    )


#: What each layer may import from the project (prefixes); everything else is an upward import.
LAYERS = {
    "sim.model": ("sim.model",),
    "sim.decisions": ("sim.model",),
    "sim.registry": (),
    "sim.stats": (),
    "sim.io": (),
    "sim.seeding": (),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_lower_layers_import_nothing_from_above(layer):
    graph = import_graph()
    allowed = LAYERS[layer]
    bad = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m == layer or m.startswith(layer + ".")
        for d in deps
        if not any(d == a or d.startswith(a + ".") for a in allowed)
    )
    assert not bad, f"{layer} may import only {allowed or 'nothing of the project'}: {bad}"


def test_maths_core_needs_no_simulation_or_learning_library():
    heavy = {"simpy", "gymnasium", "torch", "stable_baselines3", "matplotlib", "seaborn", "pandas"}
    for path in (ROOT / "sim" / "model").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert not {n.split(".")[0] for n in names} & heavy, f"{path.name} imports {names}"


def test_agents_import_only_the_shared_types_and_lower_layers():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("agents."):
            up = sorted(d for d in deps if d.startswith(("sim.world", "sim.paper", "sim.cli", "sim.dataset")))
            assert not up, f"{mod} imports the layers above the agents: {up}"


#: A round rule written out again: (pattern, the one home to call instead).
SECOND_COPIES = [
    (r"\(1 \+ 1e-9\)|1\.0 \+ 1e-9", "sim.model.service.exceeds_budget / transmitted_powers"),
    (r"\bber_awgn\(", "sim.model.service.image_ber"),
    (r"\b(ch|channel)\.transmission_time_s\(", "sim.model.service.transmission_time_s"),
    (r"eta_q \*|\beta_c \*", "sim.model.qoe.user_utility / utility"),
    (r"// *(self\.)?gpus", "sim.model.service.image_done_times / gpu_completion_times"),
    (r"p_undecodable\(", "sim.model.service.received_scores"),
]


@pytest.mark.parametrize("pattern, home", SECOND_COPIES)
def test_round_rules_have_one_home(pattern, home):
    offenders = []
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("sim/model/") or rel.startswith("sim/dataset/calibration"):
                continue  # the rules' home; calibration fits the damage model's own parameters
            code = "\n".join(line.split("#")[0] for line in path.read_text(encoding="utf-8").splitlines())
            code = re.sub(r'"""(?:.|\n)*?"""', "", code)  # docstrings may name the rules
            if re.search(pattern, code):
                offenders.append(rel)
    if "p_undecodable" in pattern:  # the oracle integrates the damage model analytically (its CDF), not by draws
        offenders = [o for o in offenders if o != "agents/oracle.py"]
    assert not offenders, f"a round rule is written again in {offenders}; call {home}"


def _fresh_import(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_importing_the_rl_code_does_not_load_plotting_or_learning_libraries():
    loaded = _fresh_import(
        "import sys, sim.rl, sim.rl.training, sim.rl.prompt_training, sim.rl.evaluation, agents.learned\n"
        "print(sorted(m for m in ('matplotlib', 'seaborn', 'torch', 'stable_baselines3') if m in sys.modules))"
    )
    assert loaded.strip() == "[]", f"importing sim.rl loads {loaded.strip()}"


def test_old_import_paths_still_work_and_warn():
    import sim.model.channel
    import sim.rl.features

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop("sim.channel", None)
        sys.modules.pop("sim.envs", None)
        sys.modules.pop("agents.base", None)
        import agents.base
        import sim.channel
        import sim.envs
    assert sim.channel is sim.model.channel
    assert sim.envs.observation_vector is sim.rl.features.observation_vector
    assert agents.base.make_provisioning_agent.__name__ == "build_provisioning_agent"
    assert {"sim.channel", "sim.envs", "agents.base"} <= {
        str(w.message).split()[0] for w in caught if issubclass(w.category, DeprecationWarning)
    }
    assert sim.model.channel.__spec__.name == "sim.model.channel"
