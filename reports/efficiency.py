"""Data-efficiency ratio against i.i.d. scaling: how many random examples buy the same accuracy.

DE = n_R(a) / n: a strategy reached test accuracy a with n examples; n_R(a) is the number of i.i.d. ("random")
examples that reach a on its own replicate's i.i.d. curve. The i.i.d. curve is estimated, not read off point by
point (`reports.iid_fit`: one smooth increasing curve in log n per replicate, the shape g pooled over replicates,
each replicate at its own level).

The report's estimator is paired (`estimate_ratio_paired`): random always has a point at the strategy's own
budget n, in the same replicate, so their paired difference D = mean_r(acc_r - random_r(n)) needs no curve, and the
fitted shape only turns D into examples:

    DE = exp(x* - x_n),   g(x*) = g(x_n) + D,   x = log n - c.

Random against itself is exactly 1 at every budget, and so is every strategy at round 0 (one shared model). The
alternative, `estimate_ratio` ("fitted"), locates the mean offset of the strategy's accuracies from their
replicates' fitted levels on the shape, and so inherits the fit's residual at n_R: where the polynomial misfits
random's points, random's own point read that way came out at 1.32x, 0.57x, 1.48x and 0.84x on a real CPU run.
The paired estimator's error is instead the residual's change from n to n_R. Measured against known truth
(bench/efficiency_simulation.py, 1,000 trials a cell, 16 replicates, three budget layouts): on curves the
polynomial fits, both are unbiased (|bias| <= 1.3%; coverage 0.92-0.96 paired, 0.90-0.97 fitted, intervals about
15% wider paired); on curves it misfits (a plateau, a bump, a saturating curve with 3-4 budgets, a sharp knee) the
mean |bias| at true ratios 1, 1.25, 1.5 and 2 is 0.3%, 5.4%, 9.4%, 21% paired against 25%, 22%, 15%, 4.5%
fitted (worst cells +53% fitted at ratio 1, -29% paired at ratio 2). The ratios this loop measures lie within
0.7-1.6, where the paired estimator has the smaller bias at nominal coverage: it is the one reported. The fitted
estimator stays for a budget random has no point at (the auto controller's grown budgets) and for the fit check.

The fit check (`fit_residuals`, `curve_error`): random's own point at each budget, read through the fitted
estimator, is the fit's residual as a ratio (1 where the curve reads random right). A ratio's `curve_error` is the
residual's change in log examples between n and n_R (interpolated in log n between budgets): the paired
estimator's own error where the curve misfits (for a fitted fallback, the residual at n_R). A ratio is `flagged`
where that error exceeds the half-width of its 95% interval, on the log scale: the interval then understates what
the curve's shape leaves unknown.

Interval (both estimators): a bootstrap over replicates (with replacement), each draw refitting the curve shape;
se = sqrt(R / (R-1)) * the sd over draws of the accuracy-scale quantity located (the mean offset; for the paired
estimator, how far each draw's D misses its own shape's rise from n to n_R, so that the shape's uncertainty enters
only over the stretch it is used for); target +- t_{0.975, R-1} * se mapped through the point shape's inverse. One
replicate has no interval. Each replicate's own ratio (located alone) is kept for display.

Where the i.i.d. accuracies do not grow with n (a model that learns nothing), no ratio exists: "undefined",
with a warning in the report; where the curve is flat in over 2.5% of bootstrap draws, the interval is open.

Censoring: where the target lies above the fitted curve at the largest i.i.d. budget n_max, the ratio is only
known to be >= n_max / n: a lower bound ("≥"), its interval's upper end open; below the curve at the first
budget, an upper bound ("≤"). An interval end beyond the measured range on its own side is open (None); one past
the opposite edge is reported at that edge, a conservative limit. `max_measurable` = n_max / n, the largest ratio
the i.i.d. curve could measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

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
    "lower", "upper" (the mean target past an end of the i.i.d. curve) or "undefined" (that curve does not rise);
    `se_log`: standard error of the mean log-ratio (None for one replicate);
    `estimator`: "paired" or "fitted"; `curve_error`: the fitted curve's misreading between n and n_R in log
    examples (None where it cannot be read), `flagged` where it exceeds the interval's half-width (module docstring).
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
    estimator: str = "fitted"
    curve_error: float | None = None
    flagged: bool = False


def estimate_ratio(budgets, reference, accuracy, n: float, replicates=None, *, boot: int = BOOTSTRAP,
                   seed: int = 0) -> RatioEstimate:
    """The ratio of a strategy that reached `accuracy` [R] with `n` examples, against the i.i.d. accuracies
    `reference` [R, K] over `budgets` [K] of the same R replicates (rows paired; NaN where a point is missing)."""
    budgets, ref, acc = _as_arrays(budgets, reference, accuracy)

    def targets(curves: Curves, draws: np.ndarray):
        offsets = acc[None, :] - curves.levels  # [B, R]: the strategy's accuracy above its replicate's curve level
        mean_offset = (draws * offsets).sum(1) / len(acc)
        return mean_offset, mean_offset, offsets[0]

    return _estimate(budgets, ref, acc, n, replicates, boot, seed, targets)


def estimate_ratio_paired(budgets, reference, accuracy, n: float, replicates=None, *, boot: int = BOOTSTRAP,
                          seed: int = 0) -> RatioEstimate:
    """The ratio as `estimate_ratio`, read through the i.i.d. point at the strategy's own budget: the report's
    estimator (the module docstring says why; bench/efficiency_simulation.py compares the two against known truth).

    The strategy and random both have a point at `n` in every replicate, so their paired difference
    D = mean_r(accuracy_r - reference_r(n)) needs no curve. The fitted shape g (no level) is used only to turn D
    into examples: the ratio is exp(x* - x_n), where g(x*) = g(x_n) + D and x = log n - c. Where the polynomial
    misfits the i.i.d. points, `estimate_ratio` inherits the fit's residual at n_R (at n for a ratio near 1);
    here the residual at n cancels (random against itself is 1 to bisection precision), and what remains is the
    residual's change from n to n_R: the shape's error between them, which grows with the ratio.

    Interval: the same bootstrap over replicates, each draw refitting the shape and recomputing D from the drawn
    replicates; se (accuracy scale) = sqrt(R / (R-1)) * the sd over draws of D_b - (g_b(x*) - g_b(x_n)), i.e. of
    how far each draw's paired difference misses its own shape's rise from n to the point estimate's n_R (so
    the shape's uncertainty enters only over the stretch it is used for); g(x_n) + D +- t_{0.975, R-1} * se is
    mapped through the point shape's inverse, with the censoring and open ends of `estimate_ratio`.

    `n` must be one of `budgets` (ValueError otherwise). Replicates whose i.i.d. point at `n` is NaN are dropped,
    from the pairing and from the shape fit alike, so that the bootstrap resamples whole pairs.
    """
    budgets, ref, acc = _as_arrays(budgets, reference, accuracy)
    column = np.flatnonzero(budgets == n)
    if column.size == 0:
        raise ValueError(f"the paired ratio needs random's own point at the strategy's budget: n = {n:g} is not "
                         f"one of the i.i.d. budgets {budgets.tolist()}")
    paired = np.isfinite(ref[:, column[0]])
    if not paired.any():
        raise ValueError(f"no replicate has an i.i.d. point at n = {n:g} (budgets {budgets.tolist()})")
    names = [s for s, keep in zip(range(len(acc)) if replicates is None else replicates, paired) if keep]
    ref, acc = ref[paired], acc[paired]
    difference = acc - ref[:, column[0]]  # [R]: the strategy above random at the same n, same replicate

    def targets(curves: Curves, draws: np.ndarray):
        shapes = _level_free(curves)
        at = np.ones((len(draws), 1))

        def height(log_n):  # each draw's shape at log n
            return shapes.accuracy(at * (log_n - curves.centre))[:, 0]

        mean_difference = (draws * difference).sum(1) / len(difference)
        at_n = height(math.log(n))
        target = at_n + mean_difference
        located, _ = _level_free(curves, slice(0, 1)).log_examples_needed(target[:1, None])
        miss = mean_difference - (height(located[0, 0]) - at_n)
        return target, miss, at_n[0] + difference

    return replace(_estimate(budgets, ref, acc, n, names, boot, seed, targets), estimator="paired")


def _as_arrays(budgets, reference, accuracy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    acc = np.asarray(accuracy, dtype=float)
    ref = np.asarray(reference, dtype=float)
    budgets = np.asarray(budgets, dtype=float)
    if ref.shape != (len(acc), len(budgets)):
        raise ValueError(f"reference must be [replicates, budgets] = [{len(acc)}, {len(budgets)}], got {ref.shape}")
    return budgets, ref, acc


def _level_free(curves: Curves, rows: slice = slice(None)) -> Curves:
    """The fitted shapes of the draws in `rows`, without their levels: a target on them is an accuracy above
    the level."""
    shape = curves.shape[rows]
    return Curves(shape, np.zeros((len(shape), 1)), curves.centre, curves.x_min, curves.x_max)


def _estimate(budgets, ref, acc, n, replicates, boot, seed, targets) -> RatioEstimate:
    """The bootstrap, censoring and interval that both estimators share. `targets(curves, draws)` gives, for the
    B = 1 + boot fits (draw 0: the data as observed), each draw's target accuracy on its own level-free shape
    [B], the accuracy-scale quantity whose sd over the bootstrap draws is the target's se [B], and each
    replicate's own target on the point shape [R] (for display)."""
    r = len(acc)
    rng = np.random.default_rng(seed)
    draws = np.vstack([np.ones(r), rng.multinomial(r, np.full(r, 1.0 / r), size=boot if r > 1 else 0)])
    curves = fit(budgets, ref, draws)
    max_measurable = float(budgets.max() / n)
    if not curves.increasing[0]:  # the i.i.d. accuracies do not grow with n: nothing can be read off them
        return RatioEstimate(int(n), math.nan, None, None, r, "undefined", None, max_measurable, [])
    target, spread, own_target = targets(curves, draws)
    point_shape = _level_free(curves, slice(0, 1))

    def log_ratio(value) -> tuple[np.ndarray, np.ndarray]:
        log_n, censor = point_shape.log_examples_needed(np.atleast_1d(value)[None, :])
        return log_n[0] - math.log(n), censor[0]

    (point,), (censored,) = log_ratio(target[0])
    own, own_censor = log_ratio(own_target)  # each replicate on its own, for display
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
    se = float(spread[1:][usable].std() * math.sqrt(r / (r - 1)))
    if se < 1e-12 and bound is None:
        # No spread at all (a strategy equal to random in every replicate: round 0): both ends at the point, also at
        # the curve's first or last budget, where the rounding of a zero-width interval would censor one end.
        value = math.exp(point)
        return RatioEstimate(int(n), value, value, value, r, bound, 0.0, max_measurable, per)
    t = stats.t.ppf(0.975, r - 1)
    (low, high), ends = log_ratio(np.array([target[0] - t * se, target[0] + t * se]))
    # An end beyond the measured range on its own side is open: the truth may lie anywhere past it. An end past
    # the opposite edge (a lower end above n_max, an upper end below n_min) sits at that edge, where it is a
    # conservative limit: the truth lies beyond it.
    low_value = None if ends[0] < 0 else math.exp(low)
    high_value = None if ends[1] > 0 else math.exp(high)
    # The log-scale standard error, for power: each bootstrap draw's target located on its own curve shape
    # (ratios beyond the measured range enter at its edge).
    log_n, _ = _level_free(curves).log_examples_needed(target[:, None])
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


def fit_residuals(budgets: np.ndarray, reference: np.ndarray, seeds: list[int]) -> dict[int, RatioEstimate]:
    """Random's own point at each i.i.d. budget read through the fitted estimator: the fit's residual as a ratio
    (1 where the curve reads random's accuracy right), with its interval, over the replicates that have the point."""
    out = {}
    for k, n in enumerate(budgets):
        rows = np.flatnonzero(np.isfinite(reference[:, k]))
        if rows.size:
            out[int(n)] = estimate_ratio(budgets, reference[rows], reference[rows, k], float(n),
                                         [seeds[i] for i in rows])
    return out


def curve_error(residuals: dict[int, RatioEstimate], e: RatioEstimate) -> float | None:
    """The fitted curve's misreading, in log examples, that estimate `e` carries (module docstring): the residual's
    change from n to n_R for a paired estimate, the residual at n_R for a fitted one; residuals interpolated in
    log n between budgets (held at the ends). None where the residuals or the ratio are undefined."""
    points = sorted((n, r.value) for n, r in residuals.items() if r.value > 0 and math.isfinite(r.value))
    if len(points) < len(residuals) or not points or not (e.value > 0 and math.isfinite(e.value)):
        return None
    log_n = np.log([n for n, _ in points])
    log_residual = np.log([v for _, v in points])

    def at(n: float) -> float:
        return float(np.interp(math.log(n), log_n, log_residual))

    reached = at(e.n_examples * e.value)
    return reached - at(e.n_examples) if e.estimator == "paired" else reached


def _checked(e: RatioEstimate, residuals: dict[int, RatioEstimate]) -> RatioEstimate:
    """`e` with its curve error and flag. A ratio is flagged where its curve error exceeds its interval's half-width
    on the log scale. An interval of no width (every replicate censored at the same edge of the i.i.d. curve, so
    the limit is the edge itself) has no spread to compare with, as a single replicate has none: not flagged, its
    curve error still reported beside it."""
    error = curve_error(residuals, e)
    ends = [math.log(x) for x in (e.low, e.high) if x is not None and x > 0]
    half = (ends[1] - ends[0]) / 2 if len(ends) == 2 else (abs(ends[0] - math.log(e.value)) if ends else None)
    # (a margin for rounding: a ratio of exactly 1 reaches where it started, with no interval to speak of)
    spread = half is not None and half > 1e-9
    return replace(e, curve_error=error, flagged=error is not None and spread and abs(error) > half + 1e-9)


def iid_residuals(evals: pl.DataFrame, reference: str = REFERENCE) -> dict[int, RatioEstimate]:
    """`fit_residuals` of an evaluations frame (EVAL_SCHEMA): random's own points through the fitted curve."""
    budgets, seeds, matrix = _usable_reference(fold_shared(evals), reference)
    return fit_residuals(budgets, matrix, seeds) if seeds else {}


def _usable_reference(folded: pl.DataFrame, reference: str) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The reference matrix over the replicates with at least two i.i.d. points (the others have no curve)."""
    budgets, seeds, matrix = _reference_matrix(folded, reference)
    keep = [i for i in range(len(seeds)) if np.isfinite(matrix[i]).sum() >= 2]
    return budgets, [seeds[i] for i in keep], matrix[keep]


def ratio_estimates(evals: pl.DataFrame, reference: str = REFERENCE, *,
                    residuals: dict[int, RatioEstimate] | None = None) -> dict[tuple[str, int], RatioEstimate]:
    """Every strategy's ratio at every budget it reached, over the replicates that have both its point and an
    i.i.d. curve: paired where random has a point at that budget, fitted elsewhere, each with its curve check.
    Reads an evaluations frame (EVAL_SCHEMA; round 0 folded in). `residuals`: `iid_residuals(evals, reference)`
    when the caller already has them (each is a bootstrap)."""
    folded = fold_shared(evals)
    budgets, seeds, matrix = _usable_reference(folded, reference)
    row = {s: i for i, s in enumerate(seeds)}
    if residuals is None:
        residuals = fit_residuals(budgets, matrix, seeds) if seeds else {}
    out = {}
    for (strategy, n), g in folded.group_by("strategy", "n_examples"):
        g = g.filter(pl.col("seed").is_in(seeds)).sort("seed")
        if g.height == 0:
            continue
        reps = g["seed"].to_list()
        if strategy == reference:
            per = [{"seed": s, "accuracy": a, "iid_examples": float(n), "ratio": 1.0, "bound": None}
                   for s, a in zip(reps, g["accuracy"])]
            out[(strategy, int(n))] = RatioEstimate(int(n), 1.0, 1.0, 1.0, len(reps), None, 0.0,
                                                    float(budgets.max() / n), per, "paired", 0.0)
            continue
        reference_rows = matrix[[row[s] for s in reps]]
        column = np.flatnonzero(budgets == n)
        paired = column.size and np.isfinite(reference_rows[:, column[0]]).any()
        estimator = estimate_ratio_paired if paired else estimate_ratio
        e = estimator(budgets, reference_rows, g["accuracy"].to_numpy(), float(n), reps)
        out[(strategy, int(n))] = _checked(e, residuals)
    return out


RATIO_SCHEMA = {
    "strategy": pl.String, "n_examples": pl.Int64, "mean": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "n_seeds": pl.Int64, "bound": pl.String, "se_log": pl.Float64,
    "max_measurable": pl.Float64, "estimator": pl.String, "curve_error": pl.Float64, "flagged": pl.Boolean,
}


def strategy_ratios(evals: pl.DataFrame, reference: str = REFERENCE, *, estimates=None) -> pl.DataFrame:
    """Per strategy and n: the geometric mean ratio over paired replicates ("mean"), its 95% interval, the
    number of replicates, the bound, the log-scale standard error, the largest measurable ratio, the estimator, the
    curve error and its flag. `estimates`: `ratio_estimates(evals, reference)` when the caller already has them
    (each is a bootstrap)."""
    estimates = ratio_estimates(evals, reference) if estimates is None else estimates
    rows = [(s, n, e.value, e.low, e.high, e.n_replicates, e.bound, e.se_log, e.max_measurable, e.estimator,
             e.curve_error, e.flagged) for (s, n), e in estimates.items()]
    return pl.DataFrame(rows, schema=RATIO_SCHEMA, orient="row").sort("strategy", "n_examples")


def seed_ratios(evals: pl.DataFrame, reference: str = REFERENCE, *, estimates=None) -> pl.DataFrame:
    """Per strategy, seed and n: the replicate's own ratio (located alone). Writes strategy, seed,
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
