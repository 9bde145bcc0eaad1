"""A written report read back for what is shown outside index.html: the command line's verdict lines and the
contents of the Prefect artifacts. The one place that parses summary.json after it is written.

Both kinds of report are handled: a comparison (reports.summary's schema) and an analysis
(reports.analysis's, `kind` "predict-generalization"). Prefect itself stays in flows/: an `Artifact` here is
plain data that flows/artifacts.py publishes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from loop.store.layout import SUMMARY

ANALYSIS_KIND = "predict-generalization"


@dataclass(frozen=True)
class Artifact:
    """One Prefect artifact: a table (a list of row dicts) or a markdown text, under a key."""

    key: str
    description: str
    table: list[dict] | None = None
    markdown: str | None = None


def read_summary(index: str | Path) -> dict:
    """The summary.json beside a report's index.html."""
    return json.loads((Path(index).parent / SUMMARY).read_text())


def verdict_lines(summary: dict) -> list[str]:
    """A comparison's verdict (one line per strategy) or an analysis's R² lines and calibrated threshold."""
    lines = list(summary.get("verdict", []))
    if summary.get("kind") == ANALYSIS_KIND:
        g, tau = summary["generalization"], summary["tau"]
        for name, key in (("pre-memorization accuracy", "r2_identity"), ("train accuracy", "r2_identity_train_acc")):
            b = g.get(key)
            if b and b.get("value") is not None:
                interval = "n/a" if b["ci_low"] is None else f"{b['ci_low']:.2f}, {b['ci_high']:.2f}"
                lines.append(f"test accuracy on y = {name}: R^2 {b['value']:.3f} [{interval}] over {b['n_runs']} runs")
        if tau.get("calibrated") is not None:
            lines.append(f"{tau['parameter']} calibrated on dev: {tau['calibrated']:.4g} (used: {tau['used']:.4g})")
    return lines


def artifacts(index: str | Path) -> list[Artifact]:
    """The artifacts of the report at `index` (its index.html), in the order they are published."""
    index = Path(index)
    summary = read_summary(index)
    if summary.get("kind") == ANALYSIS_KIND:
        return [_analysis_artifact(summary, index)]
    return _run_artifacts(summary, index)


def _png(index: Path, name: str) -> str:
    return base64.b64encode((index.parent / name).read_bytes()).decode("ascii")


def _run_artifacts(summary: dict, index: Path) -> list[Artifact]:
    """The headline table, the auto controller's decisions (where it ran) and the verdict with the curves."""
    rows = []
    for name, block in summary["strategies"].items():
        r = block.get("ratio") or {}
        rows.append({"strategy": name, "n_examples": r.get("n_examples"), "ratio": r.get("mean"),
                     "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "bound": r.get("bound"),
                     "replicates": r.get("n_seeds"), "largest_measurable": r.get("max_measurable"),
                     "detectable_at_80pct_power": r.get("detectable_ratio")})
    out = [Artifact("curation-headline", "Data efficiency against i.i.d. scaling", table=rows)]
    decisions = next((t for t in summary.get("tables", []) if t["title"].startswith("Decisions")), None)
    if decisions is not None:  # the auto controller's reasoning, round by round
        out.append(Artifact("curation-decisions", decisions["caption"],
                            table=[dict(zip(decisions["columns"], row)) for row in decisions["rows"]]))
    verdict = "\n".join(f"- {line}" for line in summary.get("verdict", [])) or "- (no strategy besides the reference)"
    out.append(Artifact(
        "curation-verdict", "Verdict and learning curves",
        markdown=f"# {summary['title']}\n\n{verdict}\n\n![learning curves](data:image/png;base64,"
                 f"{_png(index, 'curves.png')})\n\nReport: `{index}`"))
    return out


def _analysis_artifact(summary: dict, index: Path) -> Artifact:
    """The R² table and the threshold, with the scatter of test against pre-memorization accuracy."""
    g, tau = summary["generalization"], summary["tau"]

    def cell(block):
        return "–" if not block or block.get("value") is None else (
            f"{block['value']:.3f} [{block['ci_low'] if block['ci_low'] is None else round(block['ci_low'], 2)}, "
            f"{block['ci_high'] if block['ci_high'] is None else round(block['ci_high'], 2)}]")

    return Artifact(
        ANALYSIS_KIND, "Generalization prediction from pre-memorization accuracy",
        markdown=f"# {summary['title']}\n\n| predictor | R² on y = x | R² fitted |\n|---|---|---|\n"
                 f"| pre-memorization accuracy | {cell(g.get('r2_identity'))} | {cell(g.get('r2_fit'))} |\n"
                 f"| train accuracy | {cell(g.get('r2_identity_train_acc'))} | {cell(g.get('r2_fit_train_acc'))} |\n\n"
                 f"{tau['parameter']} used: {tau['used']} (calibrated on dev: {tau['calibrated']})\n\n"
                 f"![prediction](data:image/png;base64,{_png(index, 'prediction.png')})\n\nReport: `{index}`")
