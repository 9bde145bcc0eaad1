"""The analysis results on a hand-made run store whose answers are known: tau follows dev and never test, the
R^2 figures of a perfect predictor, and the points per (run, checkpoint)."""

import json
import math

import polars as pl
import pytest
import yaml

from loop.analysis.results import SweepTables, analysis_results
from loop.config import build_config

# Example a: NLL 0.5 then 0.2, samples 1/4 then 4/4; b: 0.3 then 0.02, 2/4 then 4/4. PreMem per checkpoint:
#   exp(tau) <= 0.02 (nothing memorized):        0.375, 1.0
#   0.02 < exp(tau) <= 0.2 (b at 2 memorized):   0.375, 0.75
#   0.2 < exp(tau) <= 0.3 (a and b at 2):        0.375, 0.375
LEDGER = [("a", 1, 0.5, 4, 1), ("a", 2, 0.2, 4, 4), ("b", 1, 0.3, 4, 2), ("b", 2, 0.02, 4, 4)]


def store(root, dev, test, runs=("s0-r0", "s0-r1")):
    cfg = build_config("analyze-default", overrides=["dynamics.tau_mode=absolute", "dynamics.tau=auto",
                                                     "dynamics.floor_scale=1.0", "analysis.n_boot=200",
                                                     "analysis.robustness.prefixes=[]"])
    (root / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude={"preset", "allow_resume_changes"})))
    for index, key in enumerate(runs):
        folder = root / "analysis" / "seed-0" / f"run-{index}"
        folder.mkdir(parents=True)
        pl.DataFrame(LEDGER, schema=["example_id", "epoch", "nll", "n_samples", "n_correct"], orient="row").with_columns(
            run=pl.lit(key)).write_parquet(folder / "ledger.parquet")
        rows = [(1, split, acc[0]) for split, acc in (("dev", dev), ("test", test))]
        rows += [(2, split, acc[1]) for split, acc in (("dev", dev), ("test", test))]
        pl.DataFrame(rows, schema=["epoch", "split", "accuracy"], orient="row").with_columns(
            run=pl.lit(key), n_questions=pl.lit(10), n_samples=pl.lit(1)).write_parquet(folder / "accuracy.parquet")
        pl.DataFrame({"stage": ["train"], "seconds": [1.0]}).write_parquet(folder / "timings.parquet")
        (folder / "run.json").write_text(json.dumps({"seed": 0, "index": index, "key": key, "label": f"run {index}",
                                                     "learning_rate": 1e-4, "epochs": 2, "fraction": 1.0}))
    return root


def test_tau_follows_dev_and_never_test(tmp_path):
    # dev agrees with the middle regime, test is nearest the last one: the threshold must come from the middle
    results = analysis_results(SweepTables(store(tmp_path, dev=(0.375, 0.75), test=(0.3, 0.4))))
    tau = results["tau"]
    assert tau["parameter"] == "tau" and tau["used"] == tau["calibrated"]
    assert math.log(0.02) < tau["calibrated"] <= math.log(0.2)
    best_test = max((c for c in tau["curve"] if c["r2_test"] is not None and math.isfinite(c["r2_test"])),
                    key=lambda c: c["r2_test"])
    assert best_test["shift"] > math.log(0.2)  # test alone would have chosen another threshold
    g = results["generalization"]
    assert g["n_points"] == 4 and g["n_runs"] == 2
    assert [p["premem"] for p in g["points"]] == [0.375, 0.75, 0.375, 0.75]
    # PreMem at the dev-chosen threshold predicts this test accuracy badly: 1 - SSE / SS_tot
    sse, ss_tot = 2 * (0.075**2 + 0.35**2), 4 * 0.05**2
    assert g["r2_identity"]["value"] == pytest.approx(1 - sse / ss_tot)


def test_a_perfect_predictor_gives_r2_one_with_a_degenerate_interval(tmp_path):
    results = analysis_results(SweepTables(store(tmp_path, dev=(0.375, 0.75), test=(0.375, 0.75))))
    g = results["generalization"]
    assert g["r2_identity"]["value"] == pytest.approx(1.0)
    assert g["r2_identity"]["ci_low"] == pytest.approx(1.0) and g["r2_identity"]["ci_high"] == pytest.approx(1.0)
    assert g["r2_fit"]["value"] == pytest.approx(1.0)
    # train accuracy (0.375, 1.0) overshoots test at checkpoint 2: identity 1 - 2 x 0.25^2 / (4 x 0.1875^2) = 1 - 8/9
    assert g["r2_identity_train_acc"]["value"] == pytest.approx(1 - 2 * 0.25**2 / (4 * 0.1875**2))
    assert [p["train_accuracy_first"] for p in g["points"]] == [0.375] * 4
    assert results["robustness"] is None
