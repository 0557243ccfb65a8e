"""Parameter sweeps: every grid cell x agent x seed, on the same seeds, resumable, with a tidy table and plots.

``python -m sim sweep FILE --grid arrivals.rate_per_s=0.05,0.1 --grid masps.*.p_total_w=0.5,1 --agents
static,lookahead --seeds 10`` runs the scenario once per combination of the grid's values (a *cell*), for
every agent and every seed 0..9 (the same seeds in every cell). A grid key is a dotted path into the
scenario (``masps.0.gpus`` for the first MASP, ``masps.*.p_total_w`` for all of them); values are
YAML scalars. Every cell is validated like a scenario file before anything runs: a bad key or value is one
line naming it.

Each run's summary is written to ``OUT/runs/<cell>/<agent>-seed<S>.json`` with an atomic rename, so an
interrupted sweep resumes where it stopped (finished runs are skipped). At the end ``results.parquet`` and
``results.csv`` hold one row per run (the cell's parameters, agent, seed and every summary metric), and
``report.md`` plots each headline metric against each swept parameter with a 95% confidence band per agent
(the other parameters pooled).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import yaml

from sim.config import Scenario, ScenarioError, parse_scenario
from sim.io import write_csv, write_parquet, write_text
from sim.stats import mean_ci
from sim.world.compare import Arm, claim_results_dir, run_saved

#: Metrics plotted by the sweep report.
HEADLINE_METRICS = ("mean_utility", "mean_qoe", "single_round_success", "mean_latency_s", "mean_images")


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["a.b=1,2", "c=x,y"]`` -> ``{"a.b": [1, 2], "c": ["x", "y"]}`` (values read as YAML scalars)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ScenarioError("--grid", [f"expected KEY=V1,V2,... got {spec!r}"])
        if key in grid:
            raise ScenarioError("--grid", [f"{key} is given twice"])
        parsed = [yaml.safe_load(v) for v in values.split(",")]
        if any(isinstance(v, (dict, list)) or v is None for v in parsed):
            raise ScenarioError("--grid", [f"{key}: values must be scalars, got {values!r}"])
        if len(set(map(repr, parsed))) != len(parsed):
            raise ScenarioError("--grid", [f"{key}: repeated value in {values!r}"])
        grid[key] = parsed
    return grid


def _set(node: Any, path: list[str], value: Any, key: str) -> None:
    head, rest = path[0], path[1:]
    if isinstance(node, list):
        if head == "*":
            targets = list(range(len(node)))
        elif head.isdigit() and int(head) < len(node):
            targets = [int(head)]
        else:
            raise ScenarioError("--grid", [f"{key}: {head!r} is not an index of a list of {len(node)} (or *)"])
        for i in targets:
            if rest:
                _set(node[i], rest, value, key)
            else:
                node[i] = value
        return
    if not isinstance(node, dict):
        raise ScenarioError("--grid", [f"{key}: cannot go into {head!r} (not a section)"])
    if rest:
        if head not in node or node[head] is None:
            node[head] = {}
        _set(node[head], rest, value, key)
    else:
        node[head] = value


def cells(scenario: Scenario, grid: dict[str, list[Any]]) -> list[tuple[dict[str, Any], Scenario]]:
    """Every combination of the grid's values as ``(parameters, scenario)``, each validated as a scenario."""
    base = scenario.model_dump(mode="json")
    out = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        raw = json.loads(json.dumps(base))
        for key, value in params.items():
            _set(raw, key.split("."), value, key)
        label = ", ".join(f"{k}={v}" for k, v in params.items())
        out.append((params, parse_scenario(raw, source=f"sweep cell {label}")))
    return out


def cell_id(params: dict[str, Any]) -> str:
    """A directory name for a cell: readable, and unique (a short hash of its parameters)."""
    text = "_".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())
    safe = "".join(c if c.isalnum() or c in "=.-_" else "-" for c in text)[:80]
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe}_{digest}" if safe else digest


def sweep(scenario: Scenario, grid: dict[str, list[Any]], arms: list[Arm], seeds: Sequence[int], out: Path,
          executor: str = "local", workers: int | None = None, address: str | None = None,
          quiet: bool = False, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run (or resume) the sweep into ``out``; returns the tidy results (one row per cell, agent and seed)."""
    if not grid:
        raise ScenarioError("--grid", ["give at least one --grid KEY=V1,V2,..."])
    grid_cells = cells(scenario, grid)
    out = Path(out)
    claim_results_dir(out, scenario, "sweep")
    write_text(out / "sweep.json", json.dumps({"grid": grid, "agents": [a.label for a in arms],
                                                "seeds": list(seeds)}, indent=2) + "\n")
    plan = []
    for params, cell_scenario in grid_cells:
        for arm in arms:
            for seed in seeds:
                path = out / "runs" / cell_id(params) / f"{arm.label}-seed{seed}.json"
                plan.append((params, cell_scenario, arm, seed, path))
    jobs = [(cell_scenario, arm, seed, str(path)) for _, cell_scenario, arm, seed, path in plan]
    rows = [{**params, **row} for (params, *_), row in
            zip(plan, run_saved(jobs, executor, workers, address, quiet, f"{scenario.name} sweep: runs", log))]
    results = pd.DataFrame(rows)
    write_parquet(out / "results.parquet", results)
    write_csv(out / "results.csv", results)
    write_sweep_report(out, scenario.name, results, list(grid))
    return results


def write_sweep_report(out: Path, name: str, results: pd.DataFrame, parameters: list[str]) -> Path:
    """``report.md`` with one figure per swept parameter: each headline metric against it, 95% bands per agent."""
    from sim.paper.common import pyplot

    plt = pyplot()
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    metrics = [m for m in HEADLINE_METRICS if m in results]
    lines = [f"# Sweep: {name}", "",
             f"{results['seed'].nunique()} seeds x {results['agent'].nunique()} agents x "
             f"{len(results.groupby(parameters)) if parameters else 1} cells = {len(results)} runs. Each point: the "
             "mean over seeds (and over the other parameters' values), with its 95% t-interval.", ""]
    for parameter in parameters:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            for agent, group in results.groupby("agent", sort=False):
                # per seed first (pooling the other parameters), then the CI over seeds
                per_seed = group.groupby([parameter, "seed"])[metric].mean().reset_index()
                stats = [(x, *mean_ci(g[metric].to_numpy(float))) for x, g in per_seed.groupby(parameter)]
                xs = np.arange(len(stats)) if not _numeric(results[parameter]) else np.array([s[0] for s in stats], float)
                m, lo, hi = (np.array([s[k] for s in stats], float) for k in (1, 2, 3))
                ax.plot(xs, m, marker="o", label=agent)
                ax.fill_between(xs, np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m), alpha=0.2)
                if not _numeric(results[parameter]):
                    ax.set_xticks(xs, [str(s[0]) for s in stats])
            ax.set_xlabel(parameter)
            ax.set_ylabel(metric)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        image = "sweep_" + "".join(c if c.isalnum() else "_" for c in parameter) + ".png"
        fig.savefig(out / image, dpi=110)
        plt.close(fig)
        lines += [f"## {parameter}", "", f"![{parameter}]({image})", ""]
        table = (results.groupby([parameter, "agent"], sort=False)[metrics].mean().reset_index())
        lines += ["| " + " | ".join([parameter, "agent", *metrics]) + " |", "|" + "---|" * (2 + len(metrics))]
        for r in table.itertuples(index=False):
            lines.append("| " + " | ".join([str(r[0]), str(r[1]), *(f"{v:.3f}" for v in r[2:])]) + " |")
        lines.append("")
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


__all__ = ["HEADLINE_METRICS", "cell_id", "cells", "parse_grid", "sweep", "write_sweep_report"]
