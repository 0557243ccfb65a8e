"""The paper-comparison report: each claim, the paper's figure, ours with its CI, a verdict.

Built from what the reproductions left in the output directory (``provisioning/``
and ``prompting/``), so either part can be rerun alone and the report rewritten.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from sim.paper import multimodality, prompting, provisioning, provisioning_world

PAPER = ("Y. Liu, R. Zhang, J. Wang, D. Niyato, X. Wang, D. I. Kim, H. Du, \"Intelligent Mobile AI-Generated "
         "Content Services via Interactive Prompt Engineering and Dynamic Service Provisioning\", arXiv:2502.11386")


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, {platform.system()}"


#: Each part's directory keeps what the report needs of it (claims rows and markdown sections) in this
#: file, so that the report can be rewritten after one part has run without the other parts' raw results.
PART_REPORT = "report_part.json"


def _parts(out: Path) -> list[tuple[str, list[dict[str, str]], list[str]]]:
    """``(part, claims rows, sections)`` per part: fresh from its results, else from its saved ``PART_REPORT``."""
    parts = [
        ("prompting", lambda d: prompting.claims(d),
         lambda d: [prompting.section(d, "prompting"), prompting.discussion(d)]),
        *((f"prompting-{profile}", prompting.claims,
           lambda d, rel=f"prompting-{profile}": [prompting.section(d, rel), prompting.discussion(d)])
          for profile in prompting.OTHER_PROFILES),
        ("provisioning", lambda d: provisioning.claims(d),
         lambda d: [provisioning.section(d, "provisioning"), provisioning.discussion(d)]),
        ("provisioning_world", lambda d: provisioning_world.claims(d),
         lambda d: [provisioning_world.section(d, "provisioning_world")]),
        ("multimodality", lambda d: [], lambda d: [multimodality.section(d, "multimodality")]),
    ]
    found = []
    for name, claims_of, sections_of in parts:
        directory = out / name
        sections = [text for text in sections_of(directory) if text]
        saved = directory / PART_REPORT
        if sections:
            rows = claims_of(directory)
            saved.write_text(json.dumps({"claims": rows, "sections": sections}, indent=1) + "\n", encoding="utf-8")
        elif saved.exists():
            data = json.loads(saved.read_text(encoding="utf-8"))
            rows, sections = data["claims"], data["sections"]
        else:
            continue
        found.append((name, rows, sections))
    return found


def write_report(out: Path, commands: list[str]) -> Path:
    """Write ``out/README.md`` from the parts present in ``out``; returns its path.

    A part whose results are present is reported from them (and its ``report_part.json`` rewritten); a
    part that has not run here but has a ``report_part.json`` (kept in git) is reported from that.
    """
    out = Path(out)
    parts = _parts(out)
    rows = [row for _, claims, _ in parts for row in claims]
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
    for _, _, sections in parts:
        for part in sections:
            lines += [part, ""]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
