"""Plots and markdown reports: one run (:func:`write_run_report`) and an agent comparison (:func:`write_compare_report`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from sim.stats import holm_adjust, mean_ci, paired_difference, paired_t_test  # noqa: E402
from sim.world.records import SUMMARY_METRICS, conservation_line  # noqa: E402


def _fmt(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; magnitudes below 0.01 in scientific notation (a BER is not 0.000)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    if x != 0 and abs(x) < 0.01:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}"


#: Longest cell text a report table shows (a prompt can be any length; the full text is in the Parquet files).
MAX_CELL_CHARS = 120


def _cell(value: object) -> str:
    """A table cell: control characters as spaces, ``|`` escaped, cut at :data:`MAX_CELL_CHARS`."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def _markdown_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: What a report says about a quality profile other than ``classic`` (``quality.profile``).
PROFILE_NOTES = {
    "ratings": "Quality profile `ratings`: Table II as printed, with per-prompt strategy effects partly predictable "
               "from the prompt's words (docs/quality_model.md, section 8).",
    "paper": "Quality profile `paper`: CALIBRATED TO THE PAPER'S RESULTS (raw prompts 3/55, always strategy 6 9/55, "
             "IRL about 19/55 single-image success at thresholds 7.5-8.5), not to human ratings "
             "(docs/quality_model.md, section 8).",
}


def profile_notes(profile: str) -> list[str]:
    """The line a report carries for quality profile ``profile`` (none for ``classic``)."""
    return [PROFILE_NOTES[profile]] if profile in PROFILE_NOTES else []


def write_run_report(out: Path, scenario_name: str, seed: int, summary: dict, trace: pd.DataFrame, users: pd.DataFrame,
                     warnings: list[str] | tuple[str, ...] = (), books: dict | None = None,
                     notes: list[str] | tuple[str, ...] = ()) -> Path:
    """``report.md`` and its PNG plots for one run, in ``out`` (``warnings``: lines shown above the summary;
    ``books``: the conservation check, :func:`sim.world.records.conservation`)."""
    sns.set_theme(style="whitegrid")
    images = trace[trace["record"] == "image"]
    if "lost" in images:  # images a fault lost never reached the user: the channel plots show the others
        images = images[images["lost"].fillna("") == ""]
    figures = []
    # Real generators do not know an image's generation score (NaN): then only received scores are plotted.
    scored = images[np.isfinite(images["generation_score"].astype(float))] if len(images) else images
    if len(scored):
        images = scored
        fig, ax = plt.subplots(figsize=(6, 4))
        shown = images.assign(
            decodable=images["decodable"].map({True: "decodable", False: "undecodable"}),
            expected_errors=np.maximum(images["ber"] * images["n_bits"], 1e-4),
            retained=images["received_score"] / images["generation_score"],
        )
        sns.scatterplot(data=shown, x="expected_errors", y="retained", hue="decodable", ax=ax, s=14, alpha=0.6)
        ax.set_xscale("log")
        ax.set(
            xlabel="expected bit errors in the image (BER x bits)",
            ylabel="received / generated score",
            title="Quality that survives the channel",
        )
        _save(fig, out / "retention_vs_errors.png")
        figures.append(("Share of each image's generated score the user still sees, against its expected bit errors", "retention_vs_errors.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        sns.histplot(images, x="generation_score", color="C0", label="generated", ax=ax, stat="density", alpha=0.5)
        sns.histplot(images, x="received_score", color="C1", label="received", ax=ax, stat="density", alpha=0.5)
        ax.set(xlabel="score (0-10)", title="Generated and received scores")
        ax.legend()
        _save(fig, out / "scores.png")
        figures.append(("Scores before and after the channel", "scores.png"))
    elif len(images):
        fig, ax = plt.subplots(figsize=(6, 4))
        sns.histplot(images, x="received_score", color="C1", ax=ax)
        ax.set(xlabel="received score (0-10)", title="Received scores")
        _save(fig, out / "scores.png")
        figures.append(("Received scores", "scores.png"))
    if len(users):
        fig, ax = plt.subplots(figsize=(6, 4))
        sns.countplot(data=users, x="rounds", hue="satisfied", ax=ax)
        ax.set(xlabel="service rounds", ylabel="users", title="Rounds per user")
        _save(fig, out / "rounds.png")
        figures.append(("Service rounds per user, served or not", "rounds.png"))

    rows = pd.DataFrame({"metric": list(summary), "value": [_fmt(v) if isinstance(v, float) else v for v in summary.values()]})
    lines = [
        f"# Run report: {scenario_name} (seed {seed})",
        "",
        "Files: `scenario.yaml` (resolved config), `trace.parquet` (one record per image and per round), "
        "`users.parquet` (one record per user), `summary.json`.",
        "",
        *[f"**Warning:** {w}" for w in warnings],
        *([""] if warnings else []),
        *[f"**Note:** {n}" for n in notes],
        *([""] if notes else []),
        "## Summary",
        "",
        _markdown_table(rows),
        "",
    ]
    if books is not None:
        lines += ["## Conservation", "", conservation_line(books), ""]
    if "record" in trace and (trace["record"] == "fault").any():
        faults = trace[(trace["record"] == "fault") & (trace["state"] == "down")]
        counts = faults.groupby(["fault", "target", "cause"]).size().reset_index(name="outages")
        lines += ["## Faults", "", _markdown_table(counts.head(50)), ""]
    if len(users) <= 20 and len(users):
        cols = ["user_id", "prompt", "threshold", "distance_m", "rounds", "images", "best_score", "satisfied", "latency_s", "qoe", "utility"]
        shown = users[cols].copy()
        for c in ("threshold", "distance_m", "best_score", "latency_s", "qoe", "utility"):
            shown[c] = shown[c].map(lambda v: _fmt(v, 2))
        lines += ["## Users", "", _markdown_table(shown), ""]
    for caption, name in figures:
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


#: Metrics shown in the comparison report, with whether higher is better.
COMPARE_METRICS = {
    "mean_qoe": True,
    "mean_utility": True,
    "single_round_success": True,
    "mean_rounds": False,
    "mean_latency_s": False,
    "mean_images": False,
    "mean_best_score": True,
    "served_users": True,
}


def compare_table(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per agent and metric: mean, CI low and high over seeds."""
    rows = []
    for agent, group in runs.groupby("agent", sort=False):
        for metric in SUMMARY_METRICS:
            if metric in group:
                m, lo, hi = mean_ci(group[metric].to_numpy(dtype=float), confidence)
                rows.append({"agent": agent, "metric": metric, "mean": m, "ci_low": lo, "ci_high": hi, "n": len(group)})
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, baseline: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per agent and metric, the mean paired difference to ``baseline`` over common seeds, with its CI.

    Also the paired t-test's p-value and its Holm-adjusted value across the table (``p_holm``).
    """
    base = runs[runs["agent"] == baseline].set_index("seed")
    rows = []
    for agent, group in runs.groupby("agent", sort=False):
        if agent == baseline:
            continue
        g = group.set_index("seed")
        seeds = g.index.intersection(base.index)
        for metric in COMPARE_METRICS:
            a, b = g.loc[seeds, metric], base.loc[seeds, metric]
            m, lo, hi = paired_difference(a, b, confidence)
            rows.append({"agent": agent, "metric": metric, "diff": m, "ci_low": lo, "ci_high": hi, "n": len(seeds),
                         "p": paired_t_test(a, b)})
    frame = pd.DataFrame(rows)
    if len(frame):  # Holm's correction across the whole table: every agent x metric is a claim
        frame["p_holm"] = holm_adjust(frame["p"].to_numpy())
    return frame


def winners(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per metric of :data:`COMPARE_METRICS`: the best agent (by its direction), the runner-up, and whether the
    lead is significant: the paired difference over common seeds, its CI and the paired t-test's p-value."""
    rows = []
    for metric, higher_is_better in COMPARE_METRICS.items():
        means = runs.groupby("agent", sort=False)[metric].mean().dropna()
        if len(means) < 2:
            continue
        ranked = means.sort_values(ascending=not higher_is_better)
        best, second = ranked.index[0], ranked.index[1]
        a = runs[runs["agent"] == best].set_index("seed")[metric]
        b = runs[runs["agent"] == second].set_index("seed")[metric]
        seeds = a.index.intersection(b.index)
        m, lo, hi = paired_difference(a.loc[seeds], b.loc[seeds], confidence)
        significant = bool(np.isfinite(lo) and (lo > 0 or hi < 0))
        rows.append({"metric": metric, "better": "higher" if higher_is_better else "lower", "best": best,
                     "runner_up": second, "lead": m, "ci_low": lo, "ci_high": hi,
                     "p": paired_t_test(a.loc[seeds], b.loc[seeds]), "significant": significant})
    return pd.DataFrame(rows)


def write_compare_report(out: Path, scenario_name: str, runs: pd.DataFrame, confidence: float = 0.95,
                         notes: list[str] | tuple[str, ...] = ()) -> Path:
    """``report.md`` with means, confidence intervals, paired differences and plots, in ``out``."""
    sns.set_theme(style="whitegrid")
    table = compare_table(runs, confidence)
    agents = list(dict.fromkeys(runs["agent"]))
    seeds = sorted(runs["seed"].unique())
    pct = int(round(confidence * 100))

    wide = []
    for agent in agents:
        row = {"agent": agent}
        for metric in COMPARE_METRICS:
            r = table[(table.agent == agent) & (table.metric == metric)].iloc[0]
            row[metric] = f"{_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        wide.append(row)

    metrics = list(COMPARE_METRICS)
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.5))
    for ax, metric in zip(axes.ravel(), metrics):
        sns.stripplot(data=runs, x="agent", y=metric, order=agents, ax=ax, alpha=0.35, size=3, color="grey")
        rows = table[table.metric == metric].set_index("agent").loc[agents]
        low = (rows["mean"] - rows["ci_low"]).fillna(0).to_numpy()
        high = (rows["ci_high"] - rows["mean"]).fillna(0).to_numpy()
        ax.errorbar(range(len(agents)), rows["mean"], yerr=[low, high], fmt="o", color="C0", capsize=5, markersize=7)
        ax.set(xlabel="", ylabel="", title=metric)
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{scenario_name}: mean and {pct}% Student-t CI over {len(seeds)} seeds (grey: one dot per seed)")
    _save(fig, out / "compare.png")

    lines = [
        f"# Agent comparison: {scenario_name}",
        "",
        f"{len(agents)} agents x {len(seeds)} seeds (seeds {seeds[0]}..{seeds[-1]}); every agent ran on the same seeds, "
        "so arrivals, prompts, thresholds, distances and channel draws are the same for all of them.",
        f"Cells: mean over seeds [{pct}% Student-t confidence interval]. Raw rows: `runs.csv`.",
        "",
        *[f"**Note:** {n}\n" for n in notes],
        _markdown_table(pd.DataFrame(wide)),
        "",
    ]
    if len(agents) > 1:
        wins = winners(runs, confidence)
        lines += ["## Who wins", "",
                  "Per metric, the best agent's lead over the runner-up, paired by seed: significant when the "
                  f"{pct}% interval excludes 0.", ""]
        for r in wins.itertuples(index=False):
            verdict = "significant" if r.significant else "not significant: the seeds cannot tell them apart"
            lines.append(f"- **{r.metric}** ({r.better} is better): `{r.best}`, ahead of `{r.runner_up}` by "
                         f"{_fmt(r.lead)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}], p = {_fmt(r.p, 4)}: {verdict}.")
        lines.append("")
        diffs = paired_differences(runs, agents[0], confidence)
        diffs = diffs.assign(
            **{
                f"difference [{pct}% CI]": [
                    f"{_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}]" for d, lo, hi in zip(diffs["diff"], diffs["ci_low"], diffs["ci_high"])
                ],
                "p (Holm)": [_fmt(v, 4) for v in diffs["p_holm"]],
            }
        )[["agent", "metric", f"difference [{pct}% CI]", "p (Holm)"]]
        lines += [
            f"## Paired differences to `{agents[0]}`",
            "",
            "Per seed, agent minus baseline; an interval that excludes 0 is a difference the seeds support. "
            "p: paired t-test, Holm-corrected across every row of this table (each row is a claim).",
            "",
            _markdown_table(diffs),
            "",
        ]
    lines += ["## Plots", "", "![comparison](compare.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
