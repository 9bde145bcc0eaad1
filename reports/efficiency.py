"""Data-efficiency ratio against i.i.d. scaling: how many random examples buy the same accuracy.

DE = n_R(a) / n: a strategy reached test accuracy a with n examples; n_R(a) is the number of i.i.d. ("random")
examples its own replicate's i.i.d. curve needs to reach a. The i.i.d. curve is estimated, not read off point by
point (`reports.iid_fit`: one smooth increasing curve in log n per replicate, the shape pooled over replicates).

Estimate, under that model (replicates' curves differ by their levels): each replicate's strategy accuracy minus
its own curve's level is an offset d_r; their mean d is located on the shared shape, and the ratio is

    DE = exp(x(d) + c - log n),   x(d): where the fitted shape reaches d,

i.e. the mean offset is averaged in accuracy, where noise is symmetric, and inverted once (inverting each
replicate and averaging the logs is biased where the curve flattens). 95% interval: d +- t_{0.975, R-1} * se,
mapped through the same inverse, where se = sqrt(R / (R-1)) * the sd of d over B bootstrap draws of the
replicates (with replacement), each draw refitting the curve shape: the interval carries both the replicates'
spread and the uncertainty of the fitted curve, and the t quantile keeps its coverage nominal at few replicates.
`tests/unit/test_efficiency_simulation.py` checks bias < 3% and coverage within 93-97% on simulated curves
(logistic and power-law in n) with known ratios 1, 1.5 and 2 (measured: bias within ±0.8%, coverage 93.5-95.4%;
inverting each replicate and averaging the logs instead gave coverage down to 92% where the curve flattens). One replicate has no interval. `random` against
itself is exactly 1: it is the curve. Each replicate's own ratio (its d_r located alone) is kept for display.

Where the i.i.d. accuracies do not grow with n (a model that learns nothing), no ratio exists: "undefined",
with a warning in the report; where the curve is flat in over 2.5% of bootstrap draws, the interval is open.

Censoring: where d lies above the fitted curve at the largest i.i.d. budget n_max, the ratio is only known to
be >= n_max / n: a lower bound ("≥"), its interval's upper end open; below the curve at the first budget, an
upper bound ("≤"). An interval end beyond the measured range on its own side is open (None); one past the
opposite edge is reported at that edge, a conservative limit. `max_measurable` = n_max / n, the
largest ratio the i.i.d. curve could measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import stats

from reports.curves import fold_shared
from reports.iid_fit import Curves, fit

REFERENCE = "random"
BOOTSTRAP = 2000


@dataclass(frozen=True)
class RatioEstimate:
    """A strategy's data-efficiency ratio at one budget, over paired replicates (see the module docstring).

    `value`: geometric mean ratio; `low`/`high`: its 95% interval ends (None where not defined); `bound`: None,
    "lower", "upper" or "mixed"; `se_log`: standard error of the mean log-ratio (None for one replicate).
    """

    n_examples: int
    value: float
    low: float | None
    high: float | None
    n_replicates: int
    bound: str | None
    se_log: float | None
    max_measurable: float
    per_replicate: list[dict] = field(default_factory=list)


def combine_bounds(bounds) -> str | None:
    """Bound of a summary over replicates: None if all exact, "lower"/"upper" if the censored ones agree, else
    "mixed" (a mean of values that are exact or lower bounds is itself a lower bound)."""
    kinds = {b for b in bounds if b is not None}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def estimate_ratio(budgets, reference, accuracy, n: float, replicates=None, *, boot: int = BOOTSTRAP,
                   seed: int = 0) -> RatioEstimate:
    """The ratio of a strategy that reached `accuracy` [R] with `n` examples, against the i.i.d. accuracies
    `reference` [R, K] over `budgets` [K] of the same R replicates (rows paired; NaN where a point is missing)."""
    acc = np.asarray(accuracy, dtype=float)
    ref = np.asarray(reference, dtype=float)
    budgets = np.asarray(budgets, dtype=float)
    r = len(acc)
    if ref.shape != (r, len(budgets)):
        raise ValueError(f"reference must be [replicates, budgets] = [{r}, {len(budgets)}], got {ref.shape}")
    rng = np.random.default_rng(seed)
    draws = np.vstack([np.ones(r), rng.multinomial(r, np.full(r, 1.0 / r), size=boot if r > 1 else 0)])
    curves = fit(budgets, ref, draws)
    max_measurable = float(budgets.max() / n)
    if not curves.increasing[0]:  # the i.i.d. accuracies do not grow with n: nothing can be read off them
        return RatioEstimate(int(n), math.nan, None, None, r, "undefined", None, max_measurable, [])
    offsets = acc[None, :] - curves.levels  # [B, R]: the strategy's accuracy above its replicate's curve level
    mean_offset = (draws * offsets).sum(1) / r
    point_shape = Curves(curves.shape[:1], np.zeros((1, 1)), curves.centre, curves.x_min, curves.x_max)

    def log_ratio(offset) -> tuple[np.ndarray, np.ndarray]:
        log_n, censor = point_shape.log_examples_needed(np.atleast_1d(offset)[None, :])
        return log_n[0] - math.log(n), censor[0]

    (point,), (censored,) = log_ratio(mean_offset[0])
    own, own_censor = log_ratio(offsets[0])  # each replicate on its own curve, for display
    kinds = [{1: "lower", -1: "upper"}.get(int(c)) for c in own_censor]
    names = list(replicates) if replicates is not None else list(range(r))
    per = [{"seed": s, "accuracy": float(a), "iid_examples": float(n * math.exp(x)), "ratio": float(math.exp(x)),
            "bound": k} for s, a, x, k in zip(names, acc, own, kinds)]
    bound = {1: "lower", -1: "upper"}.get(int(censored))
    if r < 2:
        return RatioEstimate(int(n), math.exp(point), None, None, r, bound, None, max_measurable, per)
    usable = curves.increasing[1:]
    if usable.mean() < 0.975:  # in over 2.5% of redraws the i.i.d. curve is flat: the data cannot bound the ratio
        return RatioEstimate(int(n), math.exp(point), None, None, r, bound, None, max_measurable, per)
    se = float(mean_offset[1:][usable].std() * math.sqrt(r / (r - 1)))
    t = stats.t.ppf(0.975, r - 1)
    (low, high), ends = log_ratio(np.array([mean_offset[0] - t * se, mean_offset[0] + t * se]))
    # An end beyond the measured range on its own side is open: the truth may lie anywhere past it. An end past
    # the opposite edge (a lower end above n_max, an upper end below n_min) sits at that edge, where it is a
    # conservative limit: the truth lies beyond it.
    low_value = None if ends[0] < 0 else math.exp(low)
    high_value = None if ends[1] > 0 else math.exp(high)
    # The log-scale standard error, for power: each bootstrap draw's mean offset located on its own curve shape
    # (ratios beyond the measured range enter at its edge).
    every_shape = Curves(curves.shape, np.zeros((len(draws), 1)), curves.centre, curves.x_min, curves.x_max)
    log_n, _ = every_shape.log_examples_needed(mean_offset[:, None])
    se_log = float(log_n[1:, 0][usable].std() * math.sqrt(r / (r - 1)))
    return RatioEstimate(int(n), math.exp(point), low_value, high_value, r, bound, se_log, max_measurable, per)


def _reference_matrix(folded: pl.DataFrame, reference: str) -> tuple[np.ndarray, list[int], np.ndarray]:
    ref = folded.filter(pl.col("strategy") == reference)
    if ref.height == 0:
        raise ValueError(
            f"evaluations have no {reference!r} rows: the data-efficiency ratio needs the i.i.d. reference curve")
    budgets = np.array(sorted(ref["n_examples"].unique().to_list()), dtype=float)
    seeds = sorted(ref["seed"].unique().to_list())
    matrix = np.full((len(seeds), len(budgets)), np.nan)
    index = {b: k for k, b in enumerate(budgets)}
    row = {s: i for i, s in enumerate(seeds)}
    for s, n, a in ref.select("seed", "n_examples", "accuracy").iter_rows():
        matrix[row[s], index[float(n)]] = a
    return budgets, seeds, matrix


def ratio_estimates(evals: pl.DataFrame, reference: str = REFERENCE) -> dict[tuple[str, int], RatioEstimate]:
    """Every strategy's ratio at every budget it reached, over the replicates that have both its point and an
    i.i.d. curve. Reads an evaluations frame (EVAL_SCHEMA; round 0 folded in)."""
    folded = fold_shared(evals)
    budgets, seeds, matrix = _reference_matrix(folded, reference)
    row = {s: i for i, s in enumerate(seeds)}
    usable = {s for s in seeds if np.isfinite(matrix[row[s]]).sum() >= 2}
    out = {}
    for (strategy, n), g in folded.group_by("strategy", "n_examples"):
        g = g.filter(pl.col("seed").is_in(list(usable))).sort("seed")
        if g.height == 0:
            continue
        reps = g["seed"].to_list()
        if strategy == reference:
            per = [{"seed": s, "accuracy": a, "iid_examples": float(n), "ratio": 1.0, "bound": None}
                   for s, a in zip(reps, g["accuracy"])]
            out[(strategy, int(n))] = RatioEstimate(int(n), 1.0, 1.0, 1.0, len(reps), None, 0.0,
                                                    float(budgets.max() / n), per)
            continue
        out[(strategy, int(n))] = estimate_ratio(budgets, matrix[[row[s] for s in reps]], g["accuracy"].to_numpy(),
                                                 float(n), reps)
    return out


RATIO_SCHEMA = {
    "strategy": pl.String, "n_examples": pl.Int64, "mean": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "n_seeds": pl.Int64, "bound": pl.String, "se_log": pl.Float64,
    "max_measurable": pl.Float64,
}


def strategy_ratios(evals: pl.DataFrame, reference: str = REFERENCE, *, estimates=None) -> pl.DataFrame:
    """Per strategy and n: the geometric mean ratio over paired replicates ("mean"), its 95% interval, the
    number of replicates, the bound, the log-scale standard error and the largest measurable ratio.
    `estimates`: `ratio_estimates(evals, reference)` when the caller already has them (each is a bootstrap)."""
    estimates = ratio_estimates(evals, reference) if estimates is None else estimates
    rows = [(s, n, e.value, e.low, e.high, e.n_replicates, e.bound, e.se_log, e.max_measurable)
            for (s, n), e in estimates.items()]
    return pl.DataFrame(rows, schema=RATIO_SCHEMA, orient="row").sort("strategy", "n_examples")


def seed_ratios(evals: pl.DataFrame, reference: str = REFERENCE, *, estimates=None) -> pl.DataFrame:
    """Per strategy, seed and n: the replicate's own ratio from the fitted curve. Writes strategy, seed,
    n_examples, accuracy, iid_examples, ratio, bound. `estimates`: as in `strategy_ratios`."""
    estimates = ratio_estimates(evals, reference) if estimates is None else estimates
    rows = [(s, p["seed"], n, p["accuracy"], p["iid_examples"], p["ratio"], p["bound"])
            for (s, n), e in estimates.items() for p in e.per_replicate]
    schema = {"strategy": pl.String, "seed": pl.Int64, "n_examples": pl.Int64, "accuracy": pl.Float64,
              "iid_examples": pl.Float64, "ratio": pl.Float64, "bound": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row").sort("strategy", "n_examples", "seed")


def headline_ratios(ratios: pl.DataFrame) -> pl.DataFrame:
    """One row per strategy from `strategy_ratios`: the final budget, i.e. the largest n_examples among the
    points with the most replicates (so an unfinished replicate does not move the headline). Same columns."""
    return (
        ratios.filter(pl.col("n_seeds") == pl.col("n_seeds").max().over("strategy"))
        .filter(pl.col("n_examples") == pl.col("n_examples").max().over("strategy"))
        .sort("strategy")
    )
