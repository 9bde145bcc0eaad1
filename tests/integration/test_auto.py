"""The auto strategy in a comparison on a tiny real model: a decision per round in the step record, dev accuracy
measured, the same decisions after a resume, a stopping rule that ends the chain, and the report's decision log."""

import json

import polars as pl
import pytest

from loop.config import build_config
from loop.engine import Engine
from reports.run import write_run_report

pytestmark = pytest.mark.integration


def cfg(model_dir, out, params="{arms: [premem, loss]}"):
    return build_config("smoke", overrides=[
        f"model.name_or_path={model_dir}", f"out_dir={out}", "data.n_seeds=6", "data.n_test=6", "data.n_dev=6",
        "sampling.max_new_tokens=24", "torch_threads=1", "workers=1", "selection.budgets=[3, 3, 3]",
        f"selection.strategies=[random, {{name: auto, params: {params}}}]"])


def decisions(out):
    """The decision records, less the compute check's evidence (wall seconds, which no seed fixes)."""
    made = [json.loads(p.read_text())["decision"] for p in sorted(out.glob("steps/seed-0/auto/round-*/step.json"))]
    for d in made:
        d["checks"] = [c for c in d["checks"] if c["rule"] != "compute_seconds"]
    return made


def test_auto_decides_each_round_and_resumes_to_the_same_decisions(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    Engine(cfg(tiny_model_dir, out)).run_all(progress=False)
    made = decisions(out)
    assert [d["round"] for d in made] == [1, 2, 3]
    assert all(d["arm"] in ("random", "premem", "loss") and d["budget"] == 3 for d in made)
    assert all(min(d["probabilities_after"].values()) >= 0.1 - 1e-9 for d in made)
    record = json.loads((out / "steps/seed-0/shared/round-0/step.json").read_text())
    assert 0.0 <= record["dev_accuracy"] <= 1.0 and record["dev_graded"] == 6
    copy = tmp_path / "again"
    Engine(cfg(tiny_model_dir, copy)).run_all(progress=False)
    assert decisions(copy) == made  # deterministic for a seed
    summary = json.loads((write_run_report(out).parent / "summary.json").read_text())
    log = next(t for t in summary["tables"] if t["title"].startswith("Decisions"))
    assert [row[2] for row in log["rows"]] == [1, 2, 3]


def test_a_stopping_rule_ends_the_chain(tiny_model_dir, tmp_path):
    out = tmp_path / "stopped"
    Engine(cfg(tiny_model_dir, out, "{arms: [premem], max_examples: 9}")).run_all(progress=False)
    made = decisions(out)
    # 6 seeds + 3 = 9 examples after round 1: round 2 stops (and round 3 after it)
    assert [d["stop"] for d in made] == [False, True, True]
    assert [d["stop_reason"] for d in made[1:]] == ["total_examples", "stopped_before"]
    stopped = json.loads((out / "steps/seed-0/auto/round-3/step.json").read_text())
    assert stopped["stopped"] and stopped["n_selected"] == 0
    assert pl.read_parquet(out / "steps/seed-0/auto/round-3/eval.parquet").height == 0  # no curve point
