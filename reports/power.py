"""What a comparison could detect, and the verdict a reader can act on.

From a ratio estimate's standard error of the mean log-ratio (se, over R paired replicates; `reports.efficiency`):
- smallest detectable ratio at 80% power, two-sided 5% test of "ratio = 1":
      exp((t_{0.975, R-1} + t_{0.80, R-1}) * se)   (and its inverse below 1);
- replicates a given effect (1.2x by default) needs: the smallest R' with
      (t_{0.975, R'-1} + t_{0.80, R'-1}) * sigma / sqrt(R') <= log(effect),   sigma = se * sqrt(R),
  the per-replicate spread this comparison showed, assumed to carry over.
"""

from __future__ import annotations

import math

from scipy import stats

from reports.efficiency import RatioEstimate

POWER = 0.80
ALPHA = 0.05


def _quantiles(replicates: int) -> float:
    df = replicates - 1
    return stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df)


def detectable_ratio(se_log: float | None, replicates: int) -> float | None:
    """The smallest ratio (above 1) this comparison detects at 80% power; None without an error estimate."""
    if se_log is None or replicates < 2 or not math.isfinite(se_log):
        return None
    return math.exp(_quantiles(replicates) * se_log)


def replicates_needed(se_log: float | None, replicates: int, effect: float = 1.2, limit: int = 10_000) -> int | None:
    """Paired replicates needed to detect `effect` at 80% power, from this comparison's spread (None without one;
    `limit` + 1 when even `limit` would not do)."""
    if se_log is None or replicates < 2 or not math.isfinite(se_log):
        return None
    sigma = se_log * math.sqrt(replicates)
    if sigma == 0:
        return 2
    target = math.log(effect)
    for r in range(2, limit + 1):
        if _quantiles(r) * sigma / math.sqrt(r) <= target:
            return r
    return limit + 1


def _limit(value: float | None) -> str:
    """An interval end as the verdict writes it: open where the data cannot bound that side."""
    return "open" if value is None else f"{value:.2f}x"


def verdict(strategy: str, e: RatioEstimate, effect: float = 1.2) -> str:
    """One plain sentence on what the comparison says about `strategy` against i.i.d. scaling, with a caution
    where the fitted i.i.d. curve's own error exceeds the ratio's interval (`RatioEstimate.flagged`)."""
    sentence = _verdict(strategy, e, effect)
    if e.flagged:
        sentence += (" (caution: the fitted i.i.d. curve misreads random's own accuracy by "
                     f"{math.exp(abs(e.curve_error)):.2f}x "
                     f"in examples between {e.n_examples} and the {e.n_examples * e.value:.0f} this ratio reaches, "
                     "more than the interval's half-width: the interval understates the uncertainty)")
    return sentence


def _verdict(strategy: str, e: RatioEstimate, effect: float) -> str:
    # An open end (beyond the i.i.d. curve's range, or where redraws of it are flat) is written as such.
    low = f"{e.low:.2f}" if e.low is not None else "open"
    high = f"{e.high:.2f}" if e.high is not None else "open"
    interval = f"{e.value:.2f}x [{low}, {high}]"
    lo = e.low if e.low is not None else 0.0
    hi = e.high if e.high is not None else math.inf
    reps = f"{e.n_replicates} replicate{'s' if e.n_replicates != 1 else ''}"
    if e.bound == "undefined":
        return (f"{strategy}: no ratio: the i.i.d. accuracies do not rise with more examples, so no number of i.i.d. "
                "examples corresponds to an accuracy")
    if e.n_replicates < 2:
        return (f"{strategy}: {e.value:.2f}x i.i.d.'s data efficiency at {e.n_examples} examples, from {reps}: "
                "no interval; run more replicates to compare")
    if e.bound == "lower":
        return (f"{strategy} beat the i.i.d. curve's largest budget on some replicates: at least {e.value:.2f}x "
                f"(95% lower limit {_limit(e.low)}), more than the {e.max_measurable:.1f}x the i.i.d. curve can "
                "measure there; extend it (selection.iid_reach) to put a number on it")
    if e.bound == "upper":
        return (f"{strategy} fell below the i.i.d. curve's first point on some replicates: at most {e.value:.2f}x "
                f"(95% upper limit {_limit(e.high)})")
    need = replicates_needed(e.se_log, e.n_replicates, effect)
    if lo > 1:
        return (f"{strategy} needs {interval} fewer examples than i.i.d. data to reach the same accuracy "
                f"({reps}, {e.n_examples} examples)")
    if hi < 1:
        return (f"{strategy} needs more examples than i.i.d. data for the same accuracy: {interval} "
                f"({reps}, {e.n_examples} examples)")
    detect = detectable_ratio(e.se_log, e.n_replicates)
    if detect is None:
        return f"{strategy} is not distinguishable from i.i.d. at {reps} ({interval}), and the data cannot bound it"
    return (f"{strategy} is not distinguishable from i.i.d. at {reps} ({interval}); this comparison detects "
            f"ratios beyond {detect:.2f}x (or below {1 / detect:.2f}x) at 80% power; a {effect:.1f}x effect would "
            f"need {need} replicates")
