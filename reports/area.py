"""Whole-curve summaries: area under the learning curve (AULC) and Baram et al.'s deficiency.

Both compare a strategy with random over all budgets at once, where the data-efficiency ratio
reads one accuracy. Curves are handled linearly in log n, the same axis as the ratio and the
figure, because budgets grow geometrically.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from reports.curves import fold_shared
from reports.efficiency import REFERENCE
from reports.stats import mean_interval


def _sorted_curve(n, acc) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(n, dtype=float)
    a = np.asarray(acc, dtype=float)
    if n.ndim != 1 or n.shape != a.shape or n.size == 0:
        raise ValueError(f"a curve needs equal-length, non-empty 1-d n and acc; got {n.shape}, {a.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(a))) or np.any(n <= 0):
        raise ValueError(f"a curve needs finite accuracies and n > 0; got n={n.tolist()}, acc={a.tolist()}")
    order = np.argsort(n, kind="stable")
    n, a = n[order], a[order]
    if np.any(np.diff(n) == 0):
        raise ValueError(f"curve has repeated n values: {n.tolist()}")
    return n, a


def area_under_curve(n, acc, log_n: bool = True, *, n_range: tuple[float, float] | None = None) -> float:
    """AULC: trapezoid area under acc(n) divided by the x-range, x = ln n (or n if not log_n).

        AULC = sum_t (x_{t+1} - x_t) * (a_t + a_{t+1}) / 2  /  (x_K - x_1)

    so a constant curve has AULC equal to that constant and the value is on the accuracy scale.
    `n_range` = (lo, hi) restricts the curve to [lo, hi] first, interpolating linearly in x at the
    ends (lo and hi must lie inside the curve's range); use it to compare two curves on the same
    range. A single point (or lo == hi) has no width: its accuracy is returned.
    """
    n, a = _sorted_curve(n, acc)
    x = np.log(n) if log_n else n
    if n_range is not None:
        lo, hi = (math.log(v) if log_n else float(v) for v in n_range)
        eps = 1e-12 * max(1.0, abs(x[-1]))
        if not (x[0] - eps <= lo <= hi <= x[-1] + eps):
            raise ValueError(f"n_range {n_range} is not inside the curve's n range [{n[0]}, {n[-1]}]")
        inside = (x > lo) & (x < hi)
        xs = np.concatenate([[lo], x[inside], [hi]])
        a = np.interp(xs, x, a)
        x = xs
    if x[-1] == x[0]:
        return float(a[0])
    # Written out rather than np.trapezoid, which numpy < 2.0 (still supported) lacks.
    return float(np.sum(np.diff(x) * (a[1:] + a[:-1]) / 2) / (x[-1] - x[0]))


def deficiency(reference_n, reference_acc, n, acc) -> float:
    """Deficiency (Baram, El-Yaniv & Luz, JMLR 2004) of a strategy curve against the reference:

        Def = sum_t [R(n_K) - acc_t] / sum_t [R(n_K) - R(n_t)]

    over the strategy's points n_1 < ... < n_K, with R the reference (random) accuracy at n_t,
    interpolated linearly in ln n on the measured reference curve when it was not measured at n_t.
    Below 1 is better than random, 1 is random itself. Strategy points outside the reference's n
    range are dropped (no extrapolation), and n_K is the largest point kept. NaN when no point is
    left or the denominator is 0 (random flat at its last value: the measure is undefined, and
    unstable whenever random saturates early).
    """
    rn, ra = _sorted_curve(reference_n, reference_acc)
    sn, sa = _sorted_curve(n, acc)
    keep = (sn >= rn[0]) & (sn <= rn[-1])
    sn, sa = sn[keep], sa[keep]
    if sn.size == 0:
        return math.nan
    r = np.interp(np.log(sn), np.log(rn), ra)
    denominator = float(np.sum(r[-1] - r))
    if denominator == 0.0:
        return math.nan
    return float(np.sum(r[-1] - sa)) / denominator


def seed_aulc(evals: pl.DataFrame, reference: str = REFERENCE, log_n: bool = True) -> pl.DataFrame:
    """Per strategy and seed: AULC on the strategy's own points and the paired difference against the reference.

    Reads an evaluations frame (EVAL_SCHEMA; round 0 folded in). Writes strategy, seed, n_min,
    n_max, aulc, diff, deficiency. `diff` = AULC_S - AULC_R with both curves restricted to the
    n range they share (the reference may extend past the strategies' last budget); `diff` and
    `deficiency` are null when the seed has no reference curve or the ranges do not overlap.
    """
    folded = fold_shared(evals)
    curves = {
        key: (g["n_examples"].to_numpy(), g["accuracy"].to_numpy())
        for key, g in folded.group_by("strategy", "seed")
    }
    rows = []
    for (strategy, seed), (n, a) in sorted(curves.items()):
        aulc = area_under_curve(n, a, log_n)
        diff = defic = None
        if (reference, seed) in curves:
            rn, ra = curves[(reference, seed)]
            lo, hi = max(n.min(), rn.min()), min(n.max(), rn.max())
            if lo <= hi:
                diff = area_under_curve(n, a, log_n, n_range=(lo, hi)) - area_under_curve(
                    rn, ra, log_n, n_range=(lo, hi)
                )
            d = deficiency(rn, ra, n, a)
            defic = None if math.isnan(d) else d
        rows.append((strategy, seed, int(n.min()), int(n.max()), aulc, diff, defic))
    schema = {
        "strategy": pl.String, "seed": pl.Int64, "n_min": pl.Int64, "n_max": pl.Int64,
        "aulc": pl.Float64, "diff": pl.Float64, "deficiency": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def strategy_aulc(evals: pl.DataFrame, reference: str = REFERENCE, log_n: bool = True) -> pl.DataFrame:
    """Per strategy: AULC, its paired difference against the reference, and deficiency, each
    as mean and 95% t-interval over seeds.

    Reads an evaluations frame (EVAL_SCHEMA). Writes strategy, n_min, n_max, aulc_mean, aulc_ci_low,
    aulc_ci_high, n_seeds, diff_mean, diff_ci_low, diff_ci_high, diff_n_seeds, deficiency_mean,
    deficiency_ci_low, deficiency_ci_high, deficiency_median, deficiency_n_seeds. n_min/n_max span
    all seeds' points.
    """
    per_seed = seed_aulc(evals, reference, log_n)
    rows = []
    for (strategy,), g in per_seed.group_by("strategy"):
        au = mean_interval(g["aulc"].to_numpy())
        diffs = g["diff"].drop_nulls()
        di = mean_interval(diffs.to_numpy())
        defs = g["deficiency"].drop_nulls()
        de = mean_interval(defs.to_numpy())
        de_median = float(defs.median()) if defs.len() else None
        rows.append((strategy, int(g["n_min"].min()), int(g["n_max"].max()), *au, g.height,
                     *di, diffs.len(), *de, de_median, defs.len()))
    schema = {
        "strategy": pl.String, "n_min": pl.Int64, "n_max": pl.Int64,
        "aulc_mean": pl.Float64, "aulc_ci_low": pl.Float64, "aulc_ci_high": pl.Float64, "n_seeds": pl.Int64,
        "diff_mean": pl.Float64, "diff_ci_low": pl.Float64, "diff_ci_high": pl.Float64, "diff_n_seeds": pl.Int64,
        "deficiency_mean": pl.Float64, "deficiency_ci_low": pl.Float64, "deficiency_ci_high": pl.Float64,
        "deficiency_median": pl.Float64, "deficiency_n_seeds": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").sort("strategy")
