"""The ratio estimators against known truth: simulated learning curves with true data-efficiency ratios of 1, 1.5
and 2, realistic noise, 16 paired replicates. Bias must stay below 3% and 95% intervals must cover the truth in
93-97% of trials (`reports.efficiency`; this is the validation behind every ratio the report prints: the paired
estimator it reports, and the fitted one it falls back to where random has no point at the budget). And on a curve
the polynomial cannot fit, the reason the paired one is reported: at ratio 1 it stays unbiased where the fitted one
inherits the fit's residual.

Noise, as in a real comparison: each replicate draws its own data, which moves its whole curve (replicate level,
sd 0.04 in accuracy); each test accuracy is a mean of 320 graded samples (160 questions x 2 samples, binomial).
Budgets as the presets lay them out: round 0 at 32 examples, a strategy's final budget at 80, the i.i.d. curve
at 32, 56, 80, 128, 192 and 256 (3.2x the final budget). The curves and the simulator are those of
bench/efficiency_simulation.py, which also runs the wider grid (more curves, layouts and replicate counts).
"""

import numpy as np
import pytest

from bench.efficiency_simulation import layout, logistic, power_law, simulate
from reports.efficiency import estimate_ratio, estimate_ratio_paired

ESTIMATORS = {"paired": estimate_ratio_paired, "fitted": estimate_ratio}


@pytest.mark.parametrize("curve", [logistic, power_law], ids=["logistic", "power-law"])
@pytest.mark.parametrize("ratio", [1.0, 1.5, 2.0])
def test_bias_below_3_percent_and_nominal_coverage(curve, ratio):
    rng = np.random.default_rng(int(ratio * 10) + (curve is power_law))
    every = simulate(curve, ratio, rng, trials=1000, replicates=16, boot=1000, estimators=tuple(ESTIMATORS.values()))
    for j, name in enumerate(ESTIMATORS):
        est = every[:, j]
        bias = np.exp(np.log(est[:, 0]).mean()) / ratio - 1  # of the geometric-mean estimate, on the ratio scale
        coverage = np.mean((est[:, 1] <= ratio) & (ratio <= est[:, 2]))
        assert abs(bias) < 0.03, f"{name}: bias {bias:+.2%}"
        assert 0.93 <= coverage <= 0.97, f"{name}: coverage {coverage:.3f}"


def test_on_a_curve_the_polynomial_misfits_the_paired_estimator_stays_unbiased_at_ratio_1():
    """A saturating curve measured at 3 budgets (the default-gpu layout: 64, 192, 576): the fit is a straight
    line that misses the middle point, and a strategy exactly as efficient as i.i.d. data reads +53% through
    the fitted curve (bench/efficiency_simulation.json), 0% paired."""
    curve, budgets, final = layout("saturating", "default-gpu")
    every = simulate(curve, 1.0, np.random.default_rng(5), budgets=budgets, final=final, trials=200, replicates=16,
                     boot=300, estimators=tuple(ESTIMATORS.values()))
    bias = {name: np.exp(np.log(every[:, j, 0]).mean()) - 1 for j, name in enumerate(ESTIMATORS)}
    coverage = {name: np.mean((every[:, j, 1] <= 1) & (1 <= every[:, j, 2])) for j, name in enumerate(ESTIMATORS)}
    assert abs(bias["paired"]) < 0.03 and coverage["paired"] >= 0.9, (bias, coverage)
    assert bias["fitted"] > 0.3 and coverage["fitted"] < 0.5, (bias, coverage)
