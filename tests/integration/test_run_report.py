"""A finished run folder becomes a report: curves, ratios, dynamics notes, all read from the run store."""

import json

import pytest

from loop.config import build_config
from loop.run.engine import Engine
from reports.run import write_run_report

pytestmark = pytest.mark.integration


def test_report_of_a_tiny_run(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    cfg = build_config("smoke", overrides=[
        f"model.name_or_path={tiny_model_dir}", f"out_dir={out}", "seeds=[0, 1]", "data.n_seeds=8",
        "data.pool_per_seed=2", "data.n_test=8", "selection.budgets=[4]", "selection.iid_extra_budgets=[4]",
        "sampling.max_new_tokens=16"])
    Engine(cfg).run_all(progress=False)
    index = write_run_report(out)
    assert index == out / "report" / "index.html" and index.exists()
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert set(summary["strategies"]) == {"random", "loss", "perplexity", "premem"}
    assert summary["n_seeds"] == 2
    random_points = [p["n_examples"] for p in summary["strategies"]["random"]["points"]]
    assert random_points == [8, 12, 16]  # round 0, the budget, the i.i.d. extension
    assert [p["n_examples"] for p in summary["strategies"]["premem"]["points"]] == [8, 12]
    notes = " ".join(summary["notes"])
    assert "phrasing floor" in notes and "Round 0" in notes and "premem" in notes
    titles = [t["title"] for t in summary["tables"]]
    assert titles == ["Learning dynamics per round", "What each strategy selected, by steps"]
    composition = summary["tables"][1]["rows"]
    assert composition[0][0] == "pool" and {r[0] for r in composition[1:]} == set(summary["strategies"])
    for row in composition:
        assert abs(sum(float(v) for v in row[1:]) - 1.0) < 0.02  # shares of one row add up to 1
    stages = set(summary["strategies"]["loss"]["compute_seconds"]["by_stage"])
    assert {"train", "eval", "select"} <= stages
