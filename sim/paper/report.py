"""The paper-comparison report: each claim, the paper's figure, ours with its CI, a verdict.

Built from what the reproductions left in the output directory (``provisioning/``
and ``prompting/``), so either part can be rerun alone and the report rewritten.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

from sim.paper import multimodality, prompting, provisioning, provisioning_world

PAPER = ("Y. Liu, R. Zhang, J. Wang, D. Niyato, X. Wang, D. I. Kim, H. Du, \"Intelligent Mobile AI-Generated "
         "Content Services via Interactive Prompt Engineering and Dynamic Service Provisioning\", arXiv:2502.11386")


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, {platform.system()}"


def write_report(out: Path, commands: list[str]) -> Path:
    """Write ``out/README.md`` from the parts present in ``out``; returns its path."""
    out = Path(out)
    rows = (prompting.claims(out / "prompting") + provisioning.claims(out / "provisioning")
            + provisioning_world.claims(out / "provisioning_world"))
    lines = [
        "# Paper comparison",
        "",
        f"Paper: {PAPER}. Ours: this simulator's surrogate world (calibrated quality model, Nakagami-m / "
        "log-normal channel, eq. 22a utility), not the paper's Stable Diffusion v2.0 + GPT-4-vision testbed; "
        "see docs/quality_model.md for what the quality model is grounded on.",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {_machine()}. Regenerate with:",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Claims",
        "",
        "| claim | paper | ours (95% CI) | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['claim']} | {r['paper']} | {r['ours']} | {r['verdict']} |" for r in rows]
    if not rows:
        lines.append("| (no part has run yet) | | | |")
    lines.append("")
    for part in (prompting.section(out / "prompting", "prompting"), prompting.discussion(out / "prompting"),
                 provisioning.section(out / "provisioning", "provisioning"), provisioning.discussion(out / "provisioning"),
                 provisioning_world.section(out / "provisioning_world", "provisioning_world"),
                 multimodality.section(out / "multimodality", "multimodality")):
        if part:
            lines += [part, ""]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
