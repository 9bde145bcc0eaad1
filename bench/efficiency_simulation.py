"""The data-efficiency ratio's two estimators against known truth: `estimate_ratio` ("fitted") and
`estimate_ratio_paired` ("paired"), both in reports/efficiency.py.

Model. A true i.i.d. learning curve f(n); replicate r draws a level u_r ~ N(0, 0.04^2) that moves all its points
alike (its data draw and test difficulty: the per-replicate effect shared by every point of the replicate). Each
accuracy is a binomial mean of 320 graded samples (160 questions x 2): random's at the i.i.d. budgets of
clip(f(n_k) + u_r), and the strategy's, at its final budget n, of clip(f(ratio * n) + u_r): a strategy that
truly needs `ratio` times fewer examples, so the true ratio is `ratio`. Optionally (rho > 0) the strategy's and
random's points at n in one replicate share part of their binomial noise, as when both are graded on the same
test questions: a share rho of the 320 samples (Binomial(320, rho) of them) use the same uniform draw for both
models; their accuracies then correlate by exactly rho where equal, a little less where apart, and each keeps
its exact Binomial(320, p) margin.

Cases. Budget layouts as the presets lay them out (the curves are defined on layout "test"'s range, 32-256, and
shifted in log n to start at each layout's first budget):
    test         i.i.d. 32, 56, 80, 128, 192, 256; strategy at 80 (round 0 at 32): the unit test's layout
    cpu-default  i.i.d. 16, 28, 40, 70, 120; strategy at 40
    default-gpu  i.i.d. 64, 128, 192, 333, 576; strategy at 192
Curves (u = log(n/32) / log 8, 0..1 over layout "test"), with the largest residual of the noise-free
polynomial fit at the i.i.d. budgets (test / cpu-default / default-gpu; binomial noise sd per point is 0.027):
    logistic    0.15 + 0.7 / (1 + exp(-(log n - log 90) / 0.9))            (< 0.001; the fit is exact)
    power_law   0.85 - 1.6 n^-0.38                                          (< 0.001)
    plateau     rises 0.56 per unit u, then 0.05 over the upper half (smooth corner at u = 0.5, width 0.1):
                the cubic turns down, so the fit falls back to a straight line (0.048 / 0.044 / 0.051); with
                noise, 58-68% of the fits (16 replicates) do
    bump        0.36 + 0.30 u + 0.10 exp(-((u - 0.02) / 0.08)^2): a hump at the first budget, a dip to the
                second (0.45 -> 0.44, as a real CPU run dipped from 16 to 28), then the rise; the fit falls back
                to a line (0.040 / 0.037 / 0.035)
    saturating  0.32 + 0.36 (1 - exp(-2.5 u)) / (1 - exp(-2.5)) on few budgets: 32, 80, 128, 256 / 16, 40, 120 /
                64, 192, 576 (4 / 3 / 3 points; every fit falls back to a line) (0.058 / 0.066 / 0.070)
    knee        0.36 + 0.12 u, bending sharply (width 0.02) at u = 0.55 to 0.45 per unit u: the cubic passes
                near the budgets but not between them (0.006 / 0.005 / 0.012); with noise, 24-49% of the fits
                (16 replicates) fall back to a line
True ratios 1, 1.25, 1.5 and 2 (every ratio * n lies inside every layout's i.i.d. range); 16, 8 and 3
replicates (the GPU presets run 8-16, the CPU default 3); rho 0 and 0.5.

Measured per cell and estimator: the bias of the geometric-mean estimate on the ratio scale (and its noise-free
limit, the estimator applied to the true curve itself), the rms log error, the coverage of the 95% interval (an
open end covers its side) with the share of misses on each side, the median interval width on the log scale
(null where over half the intervals are open) and the shares of censored and open results.

    python bench/efficiency_simulation.py [--replicates 16 8 3] [--rho 0 0.5] [--trials 1000] [--boot 500]
                                          [--layouts ...] [--curves ...] [--workers 2]

Each run merges its cells into bench/efficiency_simulation.json (keyed by layout, curve, ratio, replicates, rho
and estimator), with the machine, date and runtime of the run. tests/unit/test_efficiency_simulation.py imports
the curves and `simulate` from here.

Results (machine, dates and runtimes in the JSON; 1000 trials per cell at 16 replicates, 400 at 8 and 3;
boot 500; 864 rows). Bias of the geometric mean, coverage of the 95% interval, median log width:

- Curves the polynomial fits (logistic, power_law), all layouts: both estimators unbiased at 16 replicates
  (|bias| <= 1.3%). Coverage at 16 replicates (48 cells each): fitted 0.901-0.965, below 0.93 in 10 cells
  (below 0.92 in 6, all on cpu-default and default-gpu at ratios 1.5-2; likely because its se takes the
  shape's uncertainty in only through each replicate's level, not at n_R); paired 0.920-0.964, below 0.93 in
  1. Paired intervals are wider: 0.30 against 0.26 at rho 0, 0.24 against 0.22 at rho 0.5. At 3 replicates
  both lean up on power_law (fitted up to +5.8%, paired up to +4.4%, se about 1%) and about a third of the
  intervals are open (fitted 31%, paired 38%, up to 84-88%).
- Curves it misfits: the fitted estimator's error is the fit's residual at n_R (over the curve's slope), the
  paired one's the change of that residual from n to n_R. So the paired one is unbiased at ratio 1 and drifts
  with the ratio, the fitted one is worst at ratio 1 and best near 2; they cross near 1.5. Mean (max) |bias|
  over plateau, bump, saturating and knee and the three layouts, 16 replicates, rho 0:
      ratio    1.00          1.25          1.50          2.00
      fitted   25.3 (52.6)%  22.2 (41.8)%  14.9 (30.0)%   4.5 (11.2)%
      paired    0.3 (0.6)%    5.4 (8.1)%    9.4 (15.6)%  21.2 (28.7)%
  The same at 8 and 3 replicates within 2 points: the bias is the curve model's, and more replicates only
  narrow the interval around it. It is close to the noise-free limit (bias_noise_free) for bump and
  saturating; on plateau and knee noise changes which polynomial is fitted (cubic or the straight-line
  fallback), moving the bias up to 18 points from that limit (fitted plateau: +26% against +37% at ratio 1).
  Coverage falls with the bias. Fitted: saturating ratio 1 0.00-0.16, bump ratio 1 0.21-0.37, plateau ratio 1
  0.44-0.54, knee ratio 1 0.56-0.90. Paired: saturating ratio 2 0.00-0.12, bump ratio 2 0.38-0.47, plateau
  ratio 2 0.37-0.42, knee ratio 2 0.82-0.92. The fitted estimator's plateau intervals are the widest
  (0.50-0.74: some bootstrap fits keep the cubic, some fall back to a line; paired 0.27-0.42).
- rho 0.5 (shared grading noise at n) narrows the paired interval to 0.75x its rho-0 width (median over cells;
  0.69-0.91x) and the fitted one to 0.93x (0.84-1.03x: random's point at n enters each replicate's fitted
  level). Biases do not move, so a biased cell's coverage only falls further.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.efficiency import estimate_ratio, estimate_ratio_paired  # noqa: E402

SAMPLES = 320
LEVEL_SD = 0.04
BUDGETS = np.array([32, 56, 80, 128, 192, 256], dtype=float)  # layout "test"
FINAL = 80.0
ESTIMATORS = {"fitted": estimate_ratio, "paired": estimate_ratio_paired}
RATIOS = (1.0, 1.25, 1.5, 2.0)

# name: (i.i.d. budgets, strategy's final budget, few i.i.d. budgets for the "saturating" case)
LAYOUTS = {
    "test": ((32, 56, 80, 128, 192, 256), 80, (32, 80, 128, 256)),
    "cpu-default": ((16, 28, 40, 70, 120), 40, (16, 40, 120)),
    "default-gpu": ((64, 128, 192, 333, 576), 192, (64, 192, 576)),
}
FEW_BUDGETS = {"saturating"}


def _u(n):
    """Position in layout "test"'s range: 0 at 32, 1 at 256, linear in log n."""
    return np.log(np.asarray(n, dtype=float) / 32) / math.log(8)


def _softplus(z):
    return np.logaddexp(0.0, z)


def logistic(n):
    """Accuracy rising along a logistic in log n (a slow start, then saturation), 0.32 at 32 to 0.68 at 256."""
    return 0.15 + 0.7 / (1 + np.exp(-(np.log(n) - np.log(90)) / 0.9))


def power_law(n):
    """Error falling as a power of n (the data-scaling law's form): 0.42 at 32 to 0.66 at 256."""
    return 0.85 - 1.6 * n ** -0.38


def plateau(n):
    """A fast rise to u = 0.5 (n = 91), then nearly flat (0.05 per unit u): 0.32 at 32, 0.60 at 128, 0.62 at
    256."""
    u = _u(n)
    return 0.32 + 0.56 * u - 0.51 * 0.1 * _softplus((u - 0.5) / 0.1)


def bump(n):
    """A rise with a hump at the first budget, a small dip after it, then the rise again: 0.45 at 32 (peak 0.47
    just above), 0.44 at 56, 0.66 at 256. Every accuracy a strategy is simulated at lies above the hump, so the
    first n that reaches it is ratio * n."""
    u = _u(n)
    return 0.36 + 0.30 * u + 0.10 * np.exp(-(((u - 0.02) / 0.08) ** 2))


def saturating(n):
    """Most of the gain early, exponentially in log n: 0.32 at 32, 0.58 at 80, 0.68 at 256."""
    return 0.32 + 0.36 * (1 - np.exp(-2.5 * _u(n))) / (1 - math.exp(-2.5))


def knee(n):
    """Slow (0.12 per unit u), then a sharp bend at u = 0.55 (n = 100) to 0.45 per unit u: 0.36 at 32, 0.48 at
    128, 0.63 at 256."""
    u = _u(n)
    return 0.36 + 0.12 * u + 0.33 * 0.02 * _softplus((u - 0.55) / 0.02)


CURVES = {f.__name__: f for f in (logistic, power_law, plateau, bump, saturating, knee)}


def layout(curve_name: str, layout_name: str):
    """(curve on that layout, i.i.d. budgets, final budget): the curve shifted in log n so that it starts at the
    layout's first budget as it does at 32 on layout "test"."""
    budgets, final, few = LAYOUTS[layout_name]
    budgets = np.array(few if curve_name in FEW_BUDGETS else budgets, dtype=float)
    base, scale = CURVES[curve_name], 32.0 / budgets[0]
    return (lambda n: base(np.asarray(n, dtype=float) * scale)), budgets, float(final)


def _shared_noise(rng, random_correct, p_random, p_strategy, rho):
    """Correct counts of the strategy's SAMPLES samples, sharing a share rho of random's samples (given random's
    correct counts at the same n): on a shared sample both compare one uniform with their accuracies."""
    shared = rng.binomial(SAMPLES, rho, len(p_strategy))
    random_right = rng.hypergeometric(random_correct, SAMPLES - random_correct, shared)  # random's right, shared
    right_given_right = np.minimum(p_strategy, p_random) / p_random
    right_given_wrong = np.maximum(p_strategy - p_random, 0.0) / (1 - p_random)
    return (rng.binomial(random_right, right_given_right) + rng.binomial(shared - random_right, right_given_wrong)
            + rng.binomial(SAMPLES - shared, p_strategy))


def simulate(curve, ratio: float, rng: np.random.Generator, *, budgets=BUDGETS, final: float = FINAL,
             replicates: int = 16, trials: int = 1000, rho: float = 0.0, boot: int = 500,
             estimators=tuple(ESTIMATORS.values())) -> np.ndarray:
    """[trials, estimators, 4]: each trial's (ratio, low, high, censored) by each estimator, for a strategy that
    truly needs `ratio` x fewer examples than `curve`. Open interval ends are 0 / inf (they cover their side);
    an undefined ratio is NaN. With rho = 0 the draws are those of the unit test (plain binomials)."""
    budgets = np.asarray(budgets, dtype=float)
    at_final = np.flatnonzero(budgets == final)
    if rho > 0 and at_final.size == 0:
        raise ValueError(f"shared noise needs random's point at the final budget {final:g}, not in {budgets}")
    out = np.empty((trials, len(estimators), 4))
    for t in range(trials):
        level = rng.normal(0.0, LEVEL_SD, replicates)
        p_iid = np.clip(curve(budgets)[None, :] + level[:, None], 0.01, 0.99)
        iid = rng.binomial(SAMPLES, p_iid) / SAMPLES
        p_strategy = np.clip(curve(ratio * final) + level, 0.01, 0.99)
        if rho > 0:
            k = at_final[0]
            strategy = _shared_noise(rng, np.rint(iid[:, k] * SAMPLES).astype(int), p_iid[:, k], p_strategy,
                                     rho) / SAMPLES
        else:
            strategy = rng.binomial(SAMPLES, p_strategy) / SAMPLES
        for j, estimator in enumerate(estimators):
            e = estimator(budgets, iid, strategy, final, boot=boot, seed=t)
            out[t, j] = (e.value, e.low if e.low is not None else 0.0, e.high if e.high is not None else np.inf,
                         e.bound in ("lower", "upper", "mixed"))
    return out


def noise_free(curve, ratio: float, budgets, final: float, estimator) -> float:
    """The estimator on the true curve itself (one replicate, no noise): its bias with infinite data, i.e. the
    curve model's own error at this case."""
    budgets = np.asarray(budgets, dtype=float)
    return estimator(budgets, curve(budgets)[None, :], [float(curve(ratio * final))], final).value / ratio - 1


def summarise(est: np.ndarray, ratio: float) -> dict:
    """Bias, coverage, width and censoring over trials [trials, 4] of one estimator (undefined ratios left out
    and counted)."""
    defined = np.isfinite(est[:, 0])
    value, low, high, censored = est[defined].T
    log_error = np.log(value) - math.log(ratio)
    coverage = float(np.mean((low <= ratio) & (ratio <= high)))
    with np.errstate(divide="ignore"):
        width = np.log(high) - np.log(low)  # inf where an end is open
    median_width = float(np.median(width))
    return {
        "trials": int(len(est)),
        "bias": float(math.exp(log_error.mean()) - 1),  # of the geometric mean, on the ratio scale
        "bias_se": float(log_error.std(ddof=1) / math.sqrt(len(value))),  # on the log scale
        "rms_log_error": float(np.sqrt(np.mean(log_error ** 2))),
        "coverage": coverage,
        "coverage_se": float(math.sqrt(coverage * (1 - coverage) / len(value))),
        "miss_truth_below": float(np.mean(ratio < low)),  # interval wholly above the truth
        "miss_truth_above": float(np.mean(ratio > high)),  # interval wholly below the truth
        "median_log_width": median_width if math.isfinite(median_width) else None,
        "open": float(np.mean(~np.isfinite(width))),
        "censored": float(np.mean(censored)),
        "undefined": float(1 - defined.mean()),
    }


def _cell(job) -> tuple[list[dict], float]:
    layout_name, curve_name, ratio, replicates, rho, trials, boot = job
    started = time.time()
    curve, budgets, final = layout(curve_name, layout_name)
    seed = [list(LAYOUTS).index(layout_name), list(CURVES).index(curve_name), round(ratio * 100), replicates,
            round(rho * 100)]
    est = simulate(curve, ratio, np.random.default_rng(seed), budgets=budgets, final=final, replicates=replicates,
                   trials=trials, rho=rho, boot=boot)
    seconds = time.time() - started
    rows = [{"layout": layout_name, "curve": curve_name, "ratio": ratio, "replicates": replicates, "rho": rho,
             "estimator": name, "budgets": budgets.tolist(), "final": final, "boot": boot,
             "bias_noise_free": noise_free(curve, ratio, budgets, final, estimator),
             **summarise(est[:, j], ratio), "cell_seconds": round(seconds, 1)}
            for j, (name, estimator) in enumerate(ESTIMATORS.items())]
    return rows, seconds


def _key(row: dict) -> tuple:
    return row["layout"], row["curve"], row["ratio"], row["replicates"], row["rho"], row["estimator"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, nargs="+", default=[16, 8, 3])
    ap.add_argument("--rho", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    ap.add_argument("--curves", nargs="+", default=list(CURVES), choices=list(CURVES))
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "efficiency_simulation.json")
    args = ap.parse_args()

    jobs = [(lay, c, ratio, reps, rho, args.trials, args.boot) for reps in args.replicates for rho in args.rho
            for lay in args.layouts for c in args.curves for ratio in args.ratios]
    started = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_cell, jobs))
    elapsed = time.time() - started
    rows = [row for cell, _ in results for row in cell]

    print(f"{'layout':12} {'curve':10} {'ratio':>5} {'R':>2} {'rho':>3} {'est':6} {'bias':>7} {'limit':>7} "
          f"{'coverage':>8} {'below':>5} {'above':>5} {'width':>6} {'cens':>5}")
    for r in rows:
        width = f"{r['median_log_width']:6.3f}" if r["median_log_width"] is not None else "  open"
        print(f"{r['layout']:12} {r['curve']:10} {r['ratio']:5.2f} {r['replicates']:2d} {r['rho']:3.1f} "
              f"{r['estimator']:6} {r['bias']:+7.1%} {r['bias_noise_free']:+7.1%} {r['coverage']:8.3f} "
              f"{r['miss_truth_below']:5.3f} {r['miss_truth_above']:5.3f} {width} {r['censored']:5.3f}")
    print(f"{len(jobs)} cells x {args.trials} trials in {elapsed:.0f} s on {args.workers} workers")

    report = json.loads(args.out.read_text()) if args.out.exists() else {"runs": [], "rows": []}
    fresh = {_key(r) for r in rows}
    report["rows"] = sorted([r for r in report["rows"] if _key(r) not in fresh] + rows,
                            key=lambda r: (-r["replicates"], r["rho"], r["layout"], r["curve"], r["ratio"],
                                           r["estimator"]))
    report["description"] = ("Data-efficiency ratio estimators (fitted: reports.efficiency.estimate_ratio; paired: "
                             "estimate_ratio_paired) against known truth; model, cases and results in the docstring "
                             "of bench/efficiency_simulation.py")
    report["runs"].append({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "replicates": args.replicates, "rho": args.rho, "ratios": args.ratios, "layouts": args.layouts,
        "curves": args.curves, "trials": args.trials, "boot": args.boot, "workers": args.workers,
        "cells": len(jobs), "elapsed_s": round(elapsed, 1),
    })
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
