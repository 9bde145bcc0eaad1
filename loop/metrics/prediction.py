"""How well one quantity predicts another across (run, checkpoint) points: R^2 on the identity line, R^2 of a fitted
line, Pearson's r, and bootstrap intervals over runs. The one home of these formulas.

The paper predicts test accuracy by pre-memorization accuracy itself (no fit): R^2 against y = x. Points of one
run are not independent (its checkpoints share a model), so intervals resample whole runs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


def r2_identity(predicted, observed) -> float:
    """R^2 of `observed` against the prediction y = x (the paper's form, no fitted parameter):

        R^2 = 1 - sum_j (observed_j - predicted_j)^2 / sum_j (observed_j - mean(observed))^2

    1 for a perfect prediction, 0 for predicting the mean, negative (unbounded) for worse. NaN where the observed
    values do not vary (the denominator is 0) or there are no points.
    """
    x, y = _pair(predicted, observed)
    if y.size == 0 or np.ptp(y) == 0:
        return math.nan
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - x) ** 2)) / total


class LineFit(NamedTuple):
    """Least-squares line observed ~ intercept + slope * predicted, and its R^2."""

    slope: float
    intercept: float
    r2: float


def fit_line(predicted, observed) -> LineFit:
    """Ordinary least squares of `observed` on `predicted` with an intercept:

        slope = cov(x, y) / var(x),  intercept = mean(y) - slope * mean(x),
        R^2 = 1 - sum (y - intercept - slope x)^2 / sum (y - mean y)^2   (= Pearson r^2)

    A predictor that does not vary explains nothing: slope 0, intercept mean(y), R^2 = 0 (the textbook value of
    a constant model). R^2 is NaN where the observed values do not vary.
    """
    x, y = _pair(predicted, observed)
    if y.size == 0:
        return LineFit(math.nan, math.nan, math.nan)
    varies = np.ptp(y) > 0
    total = float(np.sum((y - y.mean()) ** 2))
    # A constant predictor by its values (its sum of squares about the mean need not round to 0: 3 x 0.1).
    if np.ptp(x) == 0:
        return LineFit(0.0, float(y.mean()), 0.0 if varies else math.nan)
    slope = float(np.sum((x - x.mean()) * (y - y.mean()))) / float(np.sum((x - x.mean()) ** 2))
    intercept = float(y.mean()) - slope * float(x.mean())
    if not varies:
        return LineFit(slope, intercept, math.nan)
    residual = float(np.sum((y - intercept - slope * x) ** 2))
    return LineFit(slope, intercept, 1.0 - residual / total)


def pearson(predicted, observed) -> float:
    """Pearson's r = cov(x, y) / (sd(x) sd(y)); NaN where either does not vary."""
    x, y = _pair(predicted, observed)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


class Bootstrapped(NamedTuple):
    """A statistic on all points, and the 2.5/97.5 percentiles of its bootstrap over runs."""

    value: float
    ci_low: float
    ci_high: float
    n_runs: int
    n_points: int


def bootstrap_over_runs(statistic, predicted, observed, runs, *, n_boot: int = 2000, seed: int = 0) -> Bootstrapped:
    """`statistic(predicted, observed)` on every point, with a percentile interval from resampling whole runs.

    Each replicate draws as many runs as there are, with replacement, and pools all their points (a run drawn
    twice counts twice). Replicates where the statistic is undefined (NaN: a draw of one run whose observed values
    are all equal) are left out; the interval is NaN with fewer than 2 runs.
    """
    x, y = _pair(predicted, observed)
    run_ids = np.asarray(runs)
    if run_ids.shape != x.shape:
        raise ValueError(f"runs has {run_ids.size} entries for {x.size} points")
    value = float(statistic(x, y))
    unique = np.unique(run_ids)
    if unique.size < 2:
        return Bootstrapped(value, math.nan, math.nan, int(unique.size), int(x.size))
    members = [np.flatnonzero(run_ids == r) for r in unique]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        picked = np.concatenate([members[i] for i in rng.integers(0, unique.size, unique.size)])
        stat = float(statistic(x[picked], y[picked]))
        if math.isfinite(stat):
            draws.append(stat)
    if not draws:
        return Bootstrapped(value, math.nan, math.nan, int(unique.size), int(x.size))
    low, high = np.percentile(draws, [2.5, 97.5])
    return Bootstrapped(value, float(low), float(high), int(unique.size), int(x.size))


def r2_fit(predicted, observed) -> float:
    """R^2 of the fitted line (`fit_line`), as a statistic for `bootstrap_over_runs`."""
    return fit_line(predicted, observed).r2


def _pair(predicted, observed) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(predicted, dtype=float).ravel()
    y = np.asarray(observed, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predictions for {y.size} observations")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("predictions and observations must be finite (drop missing points first)")
    return x, y
