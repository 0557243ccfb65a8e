"""docs/extending.md works as written: its files, copied into an empty directory outside the repository, and its commands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"<!-- (file: (?P<file>\S+)|run) -->\n```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def doc_blocks() -> tuple[dict[str, str], list[str]]:
    files, commands = {}, []
    for m in BLOCK.finditer(DOC.read_text(encoding="utf-8")):
        if m["file"]:
            files[m["file"]] = m["body"]
        else:
            commands += [line for line in m["body"].splitlines() if line.strip()]
    return files, commands


def test_the_document_has_its_examples():
    files, commands = doc_blocks()
    assert {"my_parts/equal_snr.py", "my_parts/psnr.py", "my_parts/indoor.py"} <= set(files)
    assert len(commands) >= 5 and all(c.startswith("python -m sim ") for c in commands)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An empty directory outside the repository, holding the document's files."""
    d = tmp_path_factory.mktemp("extending")
    assert ROOT not in d.parents
    files, _ = doc_blocks()
    for name, body in files.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    (d / "my_parts" / "__init__.py").write_text("", encoding="utf-8")
    return d


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "sim"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", doc_blocks()[1])
def test_document_command_runs(command, workdir):
    out = _run(command, workdir)
    assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"


def test_the_parts_ran_as_the_document_says(workdir):
    for name in ("equal_snr", "psnr", "indoor"):
        if not (workdir / "out" / name / "summary.json").exists():
            _run(next(c for c in doc_blocks()[1] if f"out/{name}" in c), workdir)
    # the user's agent decided every round: equal SNR split, 3 images
    trace = pd.read_parquet(workdir / "out" / "equal_snr" / "trace.parquet")
    rounds = trace[trace["record"] == "round"]
    assert (rounds["n_images"] == 3).all()
    first = rounds[rounds["round_index"] == 0].sort_values("user_id")
    assert first["power_w"].is_monotonic_increasing and first["power_w"].sum() == pytest.approx(1.0)
    # the comparison has both arms on the same seeds
    runs = pd.read_csv(workdir / "out" / "compare" / "runs.csv")
    assert set(runs["agent"]) == {"static", "my_parts.equal_snr:EqualSnr"} and len(runs) == 4
    # the assessor's name is on every image it scored
    images = pd.read_parquet(workdir / "out" / "psnr" / "trace.parquet").query("record == 'image'")
    assert set(images["assessor"]) == {"psnr"}
    # the wall costs 15 dB: every round's mean SNR is the open-air one (P d^-3 / N0, shadowed) less 15 dB
    trace = pd.read_parquet(workdir / "out" / "indoor" / "trace.parquet")
    users = pd.read_parquet(workdir / "out" / "indoor" / "users.parquet")
    rounds = trace.query("record == 'round'")[["user_id", "round_index", "power_w", "mean_snr_db"]]
    shadow = trace.query("record == 'image'")[["user_id", "round_index", "shadowing_db"]].drop_duplicates()
    m = rounds.merge(shadow, on=["user_id", "round_index"]).merge(users[["user_id", "distance_m"]], on="user_id")
    open_air = 10 * np.log10(m["power_w"] * m["distance_m"] ** -3.0 / 1e-9) + m["shadowing_db"]
    assert len(m) >= 3 and np.allclose(m["mean_snr_db"], open_air - 15.0)


def test_a_missing_user_module_is_one_clear_line(workdir):
    (workdir / "missing.yaml").write_text("name: m\nprovisioning_agent: {name: 'no_such_pkg.agents:Agent'}\n")
    out = _run("python -m sim run missing.yaml --quiet --out out/missing", workdir)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "cannot import module 'no_such_pkg.agents'" in out.stderr
    out = _run("python -m sim validate missing.yaml", workdir)  # validate builds the agent as run would
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "provisioning_agent: " in out.stderr and "cannot import module 'no_such_pkg.agents'" in out.stderr
    (workdir / "typo.yaml").write_text("name: t\nassessor: {backend: fidelty}\n")
    out = _run("python -m sim validate typo.yaml", workdir)
    assert out.returncode == 2 and "unknown assessor backend 'fidelty'; known: brisque, clip, fidelity, llm" in out.stderr
