"""The analysis metrics on hand-made cases whose answers are known: R^2 on y = x and of a fitted line, the bootstrap
over runs, dataset-level PreMem per checkpoint, tau calibration on dev, and the robustness bins."""

import math

import numpy as np
import polars as pl
import pytest

from loop.dynamics.calibration import calibrate, grid, premem_points
from loop.metrics.prediction import bootstrap_over_runs, fit_line, pearson, r2_fit, r2_identity
from loop.metrics.robustness import bin_index, bin_label, robustness_bins
from loop.dynamics.ledger import checkpoint_summary


# -- R^2 ---------------------------------------------------------------------------------------------------------
def test_perfect_predictor_gives_one():
    y = [0.1, 0.4, 0.35, 0.8]
    assert r2_identity(y, y) == 1.0
    assert r2_fit(y, y) == pytest.approx(1.0)
    assert r2_fit([2 * v + 1 for v in y], y) == pytest.approx(1.0)  # a line fits any linear predictor


def test_hand_computed_values():
    x, y = [0, 1, 2], [0, 1, 3]
    # mean y = 4/3, SS_tot = 14/3; identity residuals 0, 0, 1 -> 1 - 3/14
    assert r2_identity(x, y) == pytest.approx(11 / 14)
    line = fit_line(x, y)  # slope 1.5, intercept -1/6, residual SS 1/6 -> R^2 = 1 - 1/28
    assert (line.slope, line.intercept, line.r2) == (pytest.approx(1.5), pytest.approx(-1 / 6), pytest.approx(27 / 28))
    assert pearson(x, y) ** 2 == pytest.approx(27 / 28)


def test_constant_predictor_has_the_textbook_values():
    y = np.array([0.2, 0.4, 0.6])
    assert r2_identity(np.full(3, y.mean()), y) == pytest.approx(0.0)  # predicting the mean explains nothing
    c = 0.1  # any other constant: 1 - (SS_tot + n (mean - c)^2) / SS_tot
    ss_tot = float(((y - y.mean()) ** 2).sum())
    assert r2_identity(np.full(3, c), y) == pytest.approx(-3 * (y.mean() - c) ** 2 / ss_tot)
    assert fit_line(np.full(3, c), y) == (0.0, pytest.approx(y.mean()), 0.0)
    assert math.isnan(pearson(np.full(3, c), y))


def test_observations_without_spread_leave_r2_undefined():
    assert math.isnan(r2_identity([0.1, 0.2], [0.5, 0.5]))
    assert math.isnan(r2_fit([0.1, 0.2], [0.5, 0.5]))
    with pytest.raises(ValueError, match="finite"):
        r2_identity([0.1, math.nan], [0.2, 0.3])


def test_bootstrap_resamples_whole_runs():
    x = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7])
    runs = np.array(["a", "a", "b", "b", "c", "c"])
    perfect = bootstrap_over_runs(r2_identity, x, x, runs, n_boot=300)
    assert (perfect.value, perfect.ci_low, perfect.ci_high, perfect.n_runs, perfect.n_points) == (1.0, 1.0, 1.0, 3, 6)
    noisy = bootstrap_over_runs(r2_identity, x, x + np.array([0.05, -0.05, 0.1, 0, -0.1, 0.02]), runs, n_boot=300)
    assert noisy.ci_low <= noisy.ci_high <= 1.0
    again = bootstrap_over_runs(r2_identity, x, x + np.array([0.05, -0.05, 0.1, 0, -0.1, 0.02]), runs, n_boot=300)
    assert again == noisy  # seeded
    one = bootstrap_over_runs(r2_identity, x, x, np.array(["a"] * 6))
    assert one.value == 1.0 and math.isnan(one.ci_low) and one.n_runs == 1
    with pytest.raises(ValueError, match="runs has"):
        bootstrap_over_runs(r2_identity, x, x, runs[:4])


# -- dataset level -----------------------------------------------------------------------------------------------
TAU = math.log(0.1)


def ledger(rows):
    return pl.DataFrame(rows, schema=["run", "example_id", "epoch", "nll", "n_samples", "n_correct"], orient="row")


def test_checkpoint_summary_is_the_mean_per_run_and_missing_where_unsampled():
    led = ledger([
        ("r1", "a", 1, 0.5, 4, 2), ("r1", "a", 2, 0.05, 4, 4),   # premem 0.5, 0.5 (memorized at 2: capped by best)
        ("r1", "b", 1, 0.5, 4, 0), ("r1", "b", 2, 0.5, 4, 2),    # premem 0, 0.5
        ("r2", "a", 1, 0.05, 0, 0), ("r2", "a", 2, 0.05, 4, 4),  # memorized from the start: 0 (acc_1 unknown)
        ("r2", "b", 1, 0.5, 4, 4), ("r2", "b", 2, 0.5, 4, 4),
    ])
    got = checkpoint_summary(led, TAU, by=("run",)).sort("run", "epoch")
    assert got["premem"].to_list()[:2] == [pytest.approx(0.25), pytest.approx(0.5)]
    assert got["train_accuracy"].to_list()[:2] == [pytest.approx(0.25), pytest.approx(0.75)]
    # r2 epoch 1: example a was not sampled, so neither PreMem_1 nor train accuracy is known
    assert got["premem"][2] is None and got["train_accuracy"][2] is None
    assert got["premem"][3] == pytest.approx(0.5)  # (0 + 1) / 2
    assert got["memorized"].to_list() == [0.0, 0.5, 0.5, 0.5]


# -- tau calibration ---------------------------------------------------------------------------------------------
def calibration_case():
    """Two runs, two checkpoints, two examples. Example a's NLL is 0.5 then 0.2, b's 0.3 then 0.02; samples: a 1/4
    then 4/4, b 2/4 then 4/4. With 0.02 < exp(tau) <= 0.2 (tau in (-3.912, -1.609]) the only memorized checkpoint is
    b at 2, giving PreMem = (0.25 + 0.5)/2 = 0.375 at 1 and (1 + 0.5)/2 = 0.75 at 2. The dev accuracies equal
    exactly these, so dev R^2 = 1 there; a lower tau memorizes nothing (PreMem_2 = 1), a higher one a at 2 as well
    (PreMem_2 = 0.375)."""
    rows = []
    for run in ("r1", "r2"):
        rows += [(run, "a", 1, 0.5, 4, 1), (run, "a", 2, 0.2, 4, 4), (run, "b", 1, 0.3, 4, 2), (run, "b", 2, 0.02, 4, 4)]
    dev = pl.DataFrame({"run": ["r1", "r1", "r2", "r2"], "epoch": [1, 2, 1, 2], "split": "dev",
                        "accuracy": [0.375, 0.75, 0.375, 0.75]})
    return ledger(rows), dev


def test_calibration_finds_the_threshold_that_predicts_dev():
    led, dev = calibration_case()
    shifts = grid(-5.0, 0.0, 0.01)
    cal = calibrate(led, dev, None, shifts)
    assert cal.r2_dev == pytest.approx(1.0)
    assert math.log(0.02) < cal.plateau[0] < cal.plateau[0] + 0.011
    assert cal.plateau[0] <= cal.shift <= cal.plateau[1] <= math.log(0.2) < cal.plateau[1] + 0.011
    assert cal.curve.height == len(shifts) and cal.curve["r2"].max() == pytest.approx(1.0)
    points = premem_points(led, None, cal.shift)
    assert points["premem"].to_list() == [0.375, 0.75, 0.375, 0.75]


def test_calibration_reads_dev_rows_only():
    led, dev = calibration_case()
    with pytest.raises(ValueError, match="dev rows only"):
        calibrate(led, pl.concat([dev, dev.with_columns(split=pl.lit("test"))]), None, grid(-3, 0, 0.1))
    with pytest.raises(ValueError, match="needs dev accuracies"):
        calibrate(led, dev.clear(), None, grid(-3, 0, 0.1))


def test_calibration_shifts_a_per_example_base():
    led, dev = calibration_case()
    # With base thresholds log(0.5) per example, the same memorized set needs 0.02 < 0.5 e^shift <= 0.2.
    base = pl.DataFrame({"example_id": ["a", "b"], "tau": [math.log(0.5)] * 2})
    cal = calibrate(led, dev, base, grid(-5.0, 0.0, 0.01))
    assert math.log(0.04) < cal.plateau[0] <= cal.shift <= cal.plateau[1] <= math.log(0.4)
    assert cal.r2_dev == pytest.approx(1.0)


def test_grid_is_inclusive():
    assert grid(-1.0, 0.0, 0.25).tolist() == [-1.0, -0.75, -0.5, -0.25, 0.0]
    with pytest.raises(ValueError):
        grid(0.0, -1.0, 0.1)


# -- robustness bins ---------------------------------------------------------------------------------------------
def test_bins_have_the_right_edges():
    assert bin_index([0.0, 0.19, 0.2, 0.399, 0.4, 0.8, 0.99, 1.0]).tolist() == [0, 0, 1, 1, 2, 4, 4, 4]
    assert [bin_label(k) for k in range(5)] == ["[0, 0.2)", "[0.2, 0.4)", "[0.4, 0.6)", "[0.6, 0.8)", "[0.8, 1]"]
    with pytest.raises(ValueError, match="outside"):
        bin_index([1.2])
    with pytest.raises(ValueError, match="increase"):
        bin_index([0.5], edges=(0.0, 0.5, 0.5, 1.0))


def test_robustness_bins_average_per_condition():
    frame = pl.DataFrame({
        "example_id": ["a", "b", "c", "a", "b", "c"],
        "premem": [0.0, 0.1, 1.0] * 2,
        "condition": ["unperturbed"] * 3 + ["First"] * 3,
        "accuracy": [1.0, 1.0, 1.0, 0.25, 0.75, 1.0],
    })
    bins = {(b["bin"], b["condition"]): b for b in robustness_bins(frame, n_boot=200)}
    assert bins[("[0, 0.2)", "First")]["mean"] == pytest.approx(0.5) and bins[("[0, 0.2)", "First")]["n_examples"] == 2
    assert 0.25 <= bins[("[0, 0.2)", "First")]["ci_low"] <= 0.5 <= bins[("[0, 0.2)", "First")]["ci_high"] <= 0.75
    assert bins[("[0.8, 1]", "First")]["mean"] == 1.0 and math.isnan(bins[("[0.8, 1]", "First")]["ci_low"])
    assert bins[("[0.4, 0.6)", "unperturbed")]["n_examples"] == 0
    assert len(bins) == 10
