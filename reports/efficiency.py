"""Data-efficiency ratio against i.i.d. scaling: how many random examples buy the same accuracy.

DE(a) = n_R(a) / n, where n is the number of examples a strategy trained on to reach accuracy a
and n_R(a) is the number of i.i.d. ("random") examples needed to reach a, read off the random
curve interpolated linearly in log n (Mussmann & Liang 2018; the pre-memorization paper's
"1.5-2x"). Ratios are paired: each seed's strategy curve is compared with the random curve of
the same seed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import polars as pl

from reports.curves import fold_shared
from reports.stats import mean_interval

REFERENCE = "random"


class Ratio(NamedTuple):
    """A data-efficiency ratio; `bound` is None (exact), "lower" (true ratio >= value) or "upper" (<=)."""

    value: float
    bound: str | None


def _reference_curve(reference_n, reference_acc) -> tuple[np.ndarray, np.ndarray]:
    """Sort the reference curve by n, check it, and return (n, running max of accuracy)."""
    n = np.asarray(reference_n, dtype=float)
    a = np.asarray(reference_acc, dtype=float)
    if n.ndim != 1 or n.shape != a.shape or n.size == 0:
        raise ValueError(f"reference curve needs equal-length, non-empty 1-d n and acc; got {n.shape}, {a.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(a))) or np.any(n <= 0):
        raise ValueError(f"reference curve needs finite accuracies and n > 0; got n={n.tolist()}, acc={a.tolist()}")
    order = np.argsort(n, kind="stable")
    n, a = n[order], a[order]
    if np.any(np.diff(n) == 0):
        raise ValueError(f"reference curve has repeated n values: {n.tolist()}")
    return n, np.maximum.accumulate(a)


def iid_examples_needed(reference_n, reference_acc, acc: float) -> Ratio:
    """n_R(acc): i.i.d. examples needed to reach `acc`, with the same bound convention as Ratio.

    The reference curve is first made non-decreasing by its running maximum m_i = max_{j<=i} a_j
    (the best accuracy reachable with at most n_i examples), so the inverse exists; on a flat
    stretch the smallest n is taken ("first reached"). For m_{i-1} < acc <= m_i:

        log n_R = log n_{i-1} + (acc - m_{i-1}) / (m_i - m_{i-1}) * (log n_i - log n_{i-1})

    Edges: acc == m_i exactly gives n_i; acc above max(m) gives n_K as a lower bound (random
    never got there within its largest budget n_K); acc below m_1 = a_1 gives n_1 as an upper
    bound (random's first point already does better).
    """
    if not math.isfinite(acc):
        raise ValueError(f"accuracy must be finite, got {acc}")
    n, m = _reference_curve(reference_n, reference_acc)
    if acc > m[-1]:
        return Ratio(float(n[-1]), "lower")
    if acc < m[0]:
        return Ratio(float(n[0]), "upper")
    i = int(np.searchsorted(m, acc, side="left"))  # first i with m_i >= acc
    if m[i] == acc:
        return Ratio(float(n[i]), None)
    frac = (acc - m[i - 1]) / (m[i] - m[i - 1])
    log_n = math.log(n[i - 1]) + frac * (math.log(n[i]) - math.log(n[i - 1]))
    return Ratio(math.exp(log_n), None)


def data_efficiency_ratio(reference_n, reference_acc, n: float, acc: float) -> Ratio:
    """DE = n_R(acc) / n: i.i.d. examples needed to reach `acc` over the `n` examples a strategy used.

    n_R is interpolated linearly in log n on the running maximum of the reference (random) curve;
    see `iid_examples_needed` for the formula. Returns Ratio(value, bound):
      - bound None: exact (within the reference curve's range);
      - bound "lower": acc is above everything random reached, the value n_K / n is a lower bound
        (a finite bound is kept rather than inf so that seeds can still be summarised);
      - bound "upper": acc is below random's first point, the value n_1 / n is an upper bound.
    Example: reference 100 -> 0.5, 200 -> 0.6, 400 -> 0.7; acc 0.65 at n 200 gives
    n_R = 200 * 2**0.5, DE = sqrt(2).
    """
    if not (math.isfinite(n) and n > 0):
        raise ValueError(f"n must be a positive number of examples, got {n}")
    needed = iid_examples_needed(reference_n, reference_acc, acc)
    return Ratio(needed.value / n, needed.bound)


def combine_bounds(bounds) -> str | None:
    """Bound of a summary over seeds: None if all exact, "lower"/"upper" if the flagged seeds agree, else "mixed".

    A mean or median over values that are exact or lower bounds is itself a lower bound (both are
    monotone in each value); with lower and upper bounds together it is neither ("mixed").
    """
    kinds = {b for b in bounds if b is not None}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def seed_ratios(evals: pl.DataFrame, reference: str = REFERENCE) -> pl.DataFrame:
    """Per strategy, seed and n: the ratio against the same seed's reference curve.

    Reads an evaluations frame (EVAL_SCHEMA; round 0 folded in). Writes strategy, seed, n_examples,
    accuracy, iid_examples, ratio, bound. The reference strategy is included (ratio 1 except
    where its own curve dips below its running maximum). Seeds without a reference curve are
    skipped, since an unpaired ratio would mix seed-to-seed noise into the comparison.
    """
    folded = fold_shared(evals)
    ref = folded.filter(pl.col("strategy") == reference)
    if ref.height == 0:
        raise ValueError(
            f"evaluations have no {reference!r} rows: the data-efficiency ratio needs the i.i.d. reference curve"
        )
    curves = {seed: (g["n_examples"].to_numpy(), g["accuracy"].to_numpy()) for (seed,), g in ref.group_by("seed")}
    rows = []
    for strategy, seed, n, acc in folded.iter_rows():
        if seed not in curves:
            continue
        needed = iid_examples_needed(*curves[seed], acc)
        rows.append((strategy, seed, n, acc, needed.value, needed.value / n, needed.bound))
    schema = {
        "strategy": pl.String, "seed": pl.Int64, "n_examples": pl.Int64, "accuracy": pl.Float64,
        "iid_examples": pl.Float64, "ratio": pl.Float64, "bound": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").sort("strategy", "n_examples", "seed")


def strategy_ratios(evals: pl.DataFrame, reference: str = REFERENCE) -> pl.DataFrame:
    """Per strategy and n: mean ratio over paired seeds with its 95% t-interval, the median, and the bound.

    Reads an evaluations frame (EVAL_SCHEMA). Writes strategy, n_examples, mean, ci_low, ci_high,
    median, n_seeds, bound (see `combine_bounds`). Ratios are right-skewed, so read the median
    next to the mean.
    """
    per_seed = seed_ratios(evals, reference)
    rows = []
    for (strategy, n), g in per_seed.group_by("strategy", "n_examples"):
        iv = mean_interval(g["ratio"].to_numpy())
        rows.append((strategy, n, iv.mean, iv.low, iv.high, float(g["ratio"].median()), g.height,
                     combine_bounds(g["bound"].to_list())))
    schema = {
        "strategy": pl.String, "n_examples": pl.Int64, "mean": pl.Float64, "ci_low": pl.Float64,
        "ci_high": pl.Float64, "median": pl.Float64, "n_seeds": pl.Int64, "bound": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").sort("strategy", "n_examples")


def headline_ratios(ratios: pl.DataFrame) -> pl.DataFrame:
    """One row per strategy from `strategy_ratios`: the final budget, i.e. the largest n_examples
    among the points with the most seeds (so an unfinished seed does not move the headline to a
    one-seed point). Same columns as the input."""
    return (
        ratios.filter(pl.col("n_seeds") == pl.col("n_seeds").max().over("strategy"))
        .filter(pl.col("n_examples") == pl.col("n_examples").max().over("strategy"))
        .sort("strategy")
    )
