"""reports.digest: the CLI's verdict lines and the Prefect artifacts, read back from a written report."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from reports import write_report
from reports.digest import ANALYSIS_KIND, artifacts, read_summary, verdict_lines
from tests.unit.test_report_render import make_evals, make_timings


def test_a_comparison_reads_back_as_its_verdict_and_three_artifacts_at_most(tmp_path: Path):
    index = write_report(make_evals(), make_timings(), tmp_path, title="t", config_summary={})
    summary = read_summary(index)
    assert verdict_lines(summary) == summary["verdict"] and len(summary["verdict"]) == 1
    published = artifacts(index)
    assert [a.key for a in published] == ["curation-headline", "curation-verdict"]  # no auto controller: no decisions
    headline, verdict = published
    assert [row["strategy"] for row in headline.table] == ["premem", "random"] and headline.markdown is None
    assert headline.table[0]["ratio"] == summary["strategies"]["premem"]["ratio"]["mean"]
    png = verdict.markdown.split("base64,")[1].split(")")[0]
    assert base64.b64decode(png) == (index.parent / "curves.png").read_bytes()
    assert f"- {summary['verdict'][0]}" in verdict.markdown and str(index) in verdict.markdown


def test_an_analysis_reads_back_as_its_r2_lines_and_one_artifact(tmp_path: Path):
    block = {"value": 0.812, "ci_low": 0.5, "ci_high": 0.9, "n_runs": 7}
    summary = {"title": "a", "kind": ANALYSIS_KIND, "generalization": {"r2_identity": block, "r2_fit": None},
               "tau": {"parameter": "tau", "calibrated": -2.25, "used": -2.25}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "prediction.png").write_bytes(b"png")
    assert verdict_lines(read_summary(tmp_path / "index.html")) == [
        "test accuracy on y = pre-memorization accuracy: R^2 0.812 [0.50, 0.90] over 7 runs",
        "tau calibrated on dev: -2.25 (used: -2.25)"]
    (artifact,) = artifacts(tmp_path / "index.html")
    assert artifact.key == ANALYSIS_KIND and artifact.table is None
    assert "| pre-memorization accuracy | 0.812 [0.5, 0.9] | – |" in artifact.markdown
