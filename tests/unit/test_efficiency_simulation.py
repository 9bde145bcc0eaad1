"""The ratio estimator against known truth: simulated learning curves with true data-efficiency ratios of 1, 1.5
and 2, realistic noise, 16 paired replicates. Bias must stay below 3% and 95% intervals must cover the truth in
93-97% of trials (`reports.efficiency`; this is the validation behind every ratio the report prints).

Noise, as in a real comparison: each replicate draws its own data, which moves its whole curve (replicate level,
sd 0.04 in accuracy); each test accuracy is a mean of 320 graded samples (160 questions x 2 samples, binomial).
Budgets as the presets lay them out: round 0 at 32 examples, a strategy's final budget at 80, the i.i.d. curve
at 32, 56, 80, 128, 192 and 256 (3.2x the final budget).
"""

import numpy as np
import pytest

from reports.efficiency import estimate_ratio

BUDGETS = np.array([32, 56, 80, 128, 192, 256], dtype=float)
FINAL = 80.0
TRIALS = 1000
REPLICATES = 16
SAMPLES = 320


def logistic(n):
    """Accuracy rising along a logistic in log n (a slow start, then saturation), 0.32 at 32 to 0.68 at 256."""
    return 0.15 + 0.7 / (1 + np.exp(-(np.log(n) - np.log(90)) / 0.9))


def power_law(n):
    """Error falling as a power of n (the data-scaling law's form): 0.42 at 32 to 0.66 at 256."""
    return 0.85 - 1.6 * n ** -0.38


def simulate(curve, ratio: float, rng: np.random.Generator):
    """Estimated (ratio, low, high) over all trials for a strategy that truly needs `ratio` x fewer examples."""
    out = np.empty((TRIALS, 3))
    for t in range(TRIALS):
        level = rng.normal(0.0, 0.04, REPLICATES)
        iid = rng.binomial(SAMPLES, np.clip(curve(BUDGETS)[None, :] + level[:, None], 0.01, 0.99)) / SAMPLES
        strategy = rng.binomial(SAMPLES, np.clip(curve(ratio * FINAL) + level, 0.01, 0.99)) / SAMPLES
        e = estimate_ratio(BUDGETS, iid, strategy, FINAL, boot=1000, seed=t)
        # An open end (beyond the i.i.d. curve's range) covers everything on its side.
        out[t] = (e.value, e.low if e.low is not None else 0.0, e.high if e.high is not None else np.inf)
    return out


@pytest.mark.parametrize("curve", [logistic, power_law], ids=["logistic", "power-law"])
@pytest.mark.parametrize("ratio", [1.0, 1.5, 2.0])
def test_bias_below_3_percent_and_nominal_coverage(curve, ratio):
    est = simulate(curve, ratio, np.random.default_rng(int(ratio * 10) + (curve is power_law)))
    bias = np.exp(np.log(est[:, 0]).mean()) / ratio - 1  # of the geometric-mean estimate, on the ratio scale
    coverage = np.mean((est[:, 1] <= ratio) & (ratio <= est[:, 2]))
    assert abs(bias) < 0.03, f"bias {bias:+.2%}"
    assert 0.93 <= coverage <= 0.97, f"coverage {coverage:.3f}"
