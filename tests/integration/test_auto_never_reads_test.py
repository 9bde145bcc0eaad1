"""`auto` decides from the dev split and its own history, never from a test-set row: a run whose test rows say
something else (other questions and answers) and whose test evaluation reports other accuracies decides exactly as
the original does, arm, threshold, budget, stop, the rewards it saw and the lookahead's evidence (each probe trains on
seed and pool rows and is scored on dev, and on the pool items the chain keeps back where `lookahead_holdout` asks),
and selects the same items."""

import json

import numpy as np
import polars as pl
import pytest

import loop.run.prepare as prepare
import loop.run.stages as stages
from loop.run.engine import Engine
from tests.integration.test_auto import cfg, decisions

pytestmark = pytest.mark.integration


def selections(out):
    return {str(p.relative_to(out)): pl.read_parquet(p)["id"].to_list()
            for p in sorted(out.glob("steps/seed-0/auto/round-*/selected.parquet"))}


@pytest.mark.parametrize("params", ["{arms: [premem, loss]}", "{arms: [premem, loss], lookahead_holdout: 4}"],
                         ids=["dev", "dev-and-holdout"])
def test_auto_decides_the_same_whatever_the_test_set_says(tiny_model_dir, tmp_path, monkeypatch, params):
    original = tmp_path / "original"
    Engine(cfg(tiny_model_dir, original, params)).run_all(progress=False)

    load, evaluate = prepare.load_data, stages.evaluate
    draws = np.random.default_rng(0)

    def other_test_rows(data_cfg):
        examples, report = load(data_cfg)
        test = pl.col("split") == "test"
        return examples.with_columns(
            pl.when(test).then(pl.col("question") + " Then add 7.").otherwise(pl.col("question")).alias("question"),
            pl.when(test).then(pl.lit("123456")).otherwise(pl.col("answer")).alias("answer")), report

    def other_test_accuracy(run_cfg, sampler, frame, *, seed):
        scores = evaluate(run_cfg, sampler, frame, seed=seed)
        if frame.height and (frame["split"] == "test").all():  # dev is measured as it is
            scores = {**scores, "accuracy": float(draws.uniform())}
        return scores

    monkeypatch.setattr(prepare, "load_data", other_test_rows)
    monkeypatch.setattr(stages, "evaluate", other_test_accuracy)
    tampered = tmp_path / "tampered"
    Engine(cfg(tiny_model_dir, tampered, params)).run_all(progress=False)

    accuracy = [json.loads(p.read_text())["accuracy"]
                for p in sorted(tampered.glob("steps/seed-0/*/round-*/step.json"))]
    assert accuracy != [json.loads(p.read_text())["accuracy"]
                        for p in sorted(original.glob("steps/seed-0/*/round-*/step.json"))]  # it took effect
    assert decisions(tampered) == decisions(original)
    # The lookahead (on by default) ran and is part of what is compared: its probes' dev losses, P(best), batches.
    assert all(d["evidence"]["lookahead"]["arms"] for d in decisions(original))
    if "holdout" in params:
        assert all(d["evidence"]["lookahead"]["holdout_items"] == 4 for d in decisions(original))
    assert selections(tampered) == selections(original) and selections(original)
