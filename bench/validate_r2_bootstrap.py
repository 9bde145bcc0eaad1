"""Validate `loop.metrics.prediction.bootstrap_over_runs` (with `r2_identity` and `r2_fit`) against known truth.

Simulated studies of R fine-tuning runs; run r has J_r ~ U{2..6} epoch checkpoints j = 0..J_r-1 at positions
t = j / (J_r - 1), with

    x_rj = L_r + rise_r * t,          L_r ~ U(0.10, 0.45), rise_r ~ U(0, 0.25)   (x spread over [0.1, 0.7])
    y_rj = a + b * x_rj + u_r + e_rj,  u_r ~ N(0, s_u^2) (run effect), e_rj ~ N(0, s_e^2)

The truth is the value the pooled statistic converges to with infinitely many runs (a point drawn from a run of J
checkpoints counts J times), computed in closed form by `truth` and checked here against a 2-million-run draw.
Per study: the point estimate and the percentile 95% interval from resampling whole runs; over all studies: bias
of the point estimate, coverage of the interval (with its binomial standard error) and mean interval width. The
`strong` case (large run effect) adds the contrast of a naive point-level bootstrap (every point its own "run").

    python bench/validate_r2_bootstrap.py [--trials 1000] [--naive-trials 500] [--boot 500] [--workers N]

Writes bench/r2_bootstrap_validation.json. tests/unit/test_r2_bootstrap_simulation.py is the fast version; it imports
`simulate`, `truth` and `CASES` from here, so the test and the bench validate one process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop.metrics.prediction import bootstrap_over_runs, r2_fit, r2_identity  # noqa: E402

LEVEL = (0.10, 0.45)
RISE_MAX = 0.25
CHECKPOINTS = (2, 6)

# name: (a, b, s_u, s_e)
CASES = {
    "identity": (0.0, 1.0, 0.04, 0.02),  # y = x + noise: identity R^2 = fitted R^2
    "affine": (-0.1, 1.3, 0.04, 0.02),  # y = -0.1 + 1.3 x + noise: identity R^2 < fitted R^2
    "strong": (0.0, 1.0, 0.08, 0.01),  # identity holds, run effect dominates the noise (naive contrast)
}
STATISTICS = {"identity": r2_identity, "fit": r2_fit}


def simulate(n_runs: int, a: float, b: float, s_u: float, s_e: float, rng: np.random.Generator):
    """(x, y, run) of one simulated study of `n_runs` runs."""
    j = rng.integers(CHECKPOINTS[0], CHECKPOINTS[1] + 1, n_runs)
    run = np.repeat(np.arange(n_runs), j)
    first = np.repeat(np.cumsum(j) - j, j)
    t = (np.arange(run.size) - first) / np.repeat(j - 1, j)
    level = rng.uniform(*LEVEL, n_runs)
    rise = rng.uniform(0.0, RISE_MAX, n_runs)
    x = level[run] + rise[run] * t
    y = a + b * x + rng.normal(0.0, s_u, n_runs)[run] + rng.normal(0.0, s_e, run.size)
    return x, y, run


def truth(a: float, b: float, s_u: float, s_e: float) -> dict[str, float]:
    """Population R^2 (identity and fitted) under the point-weighted limit of the process, in closed form.

    A pooled point comes from a run of J = k checkpoints with probability k / sum(k); given k, t is uniform on
    {0, 1/(k-1), ..., 1}: E t = 1/2, E t^2 = (2k-1) / (6(k-1)). L, rise, u and e are independent of J and t.
    """
    ks = np.arange(CHECKPOINTS[0], CHECKPOINTS[1] + 1)
    w = ks / ks.sum()
    et2 = float(np.sum(w * (2 * ks - 1) / (6 * (ks - 1))))
    e_rise, e_rise2 = RISE_MAX / 2, RISE_MAX**2 / 3
    mean_x = sum(LEVEL) / 2 + e_rise * 0.5
    var_x = (LEVEL[1] - LEVEL[0]) ** 2 / 12 + e_rise2 * et2 - (e_rise * 0.5) ** 2
    var_y = b * b * var_x + s_u**2 + s_e**2
    mse_identity = (a + (b - 1) * mean_x) ** 2 + (b - 1) ** 2 * var_x + s_u**2 + s_e**2
    return {"identity": 1 - mse_identity / var_y, "fit": b * b * var_x / var_y}


def _trial(args):
    case, n_runs, trial, n_boot, naive = args
    rng = np.random.default_rng([n_runs, list(CASES).index(case), trial])
    x, y, run = simulate(n_runs, *CASES[case], rng)
    out = {}
    for name, stat in STATISTICS.items():
        r = bootstrap_over_runs(stat, x, y, run, n_boot=n_boot, seed=trial)
        out[name] = (r.value, r.ci_low, r.ci_high)
        if naive:
            p = bootstrap_over_runs(stat, x, y, np.arange(x.size), n_boot=n_boot, seed=trial)
            out["naive-" + name] = (p.value, p.ci_low, p.ci_high)
    return case, n_runs, out


def summarize(est: np.ndarray, true: float) -> dict:
    value, low, high = est[:, 0], est[:, 1], est[:, 2]
    cover = (low <= true) & (true <= high)
    c = float(cover.mean())
    return {
        "mean_estimate": float(value.mean()),
        "bias": float(value.mean() - true),
        "bias_se": float(value.std(ddof=1) / np.sqrt(len(value))),
        "coverage": c,
        "coverage_se": float(np.sqrt(c * (1 - c) / len(value))),
        "miss_truth_below": float(np.mean(true < low)),  # interval entirely above the truth
        "miss_truth_above": float(np.mean(true > high)),  # interval entirely below the truth
        "mean_width": float(np.mean(high - low)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--naive-trials", type=int, default=500, help="trials of the strong-run-effect contrast")
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--runs", type=int, nargs="+", default=[7, 12, 24])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "r2_bootstrap_validation.json")
    args = ap.parse_args()

    truths = {case: truth(*p) for case, p in CASES.items()}
    mc_check = {}
    for case, p in CASES.items():  # the closed form against a large draw (standard error about 2e-4)
        x, y, _ = simulate(2_000_000, *p, np.random.default_rng(12345))
        mc_check[case] = {"identity": r2_identity(x, y), "fit": r2_fit(x, y)}
        for s in STATISTICS:
            assert abs(mc_check[case][s] - truths[case][s]) < 2e-3, (case, s, mc_check[case][s], truths[case][s])

    jobs = [(c, r, t, args.boot, False) for r in args.runs for c in ("identity", "affine") for t in range(args.trials)]
    jobs += [("strong", 12, t, args.boot, True) for t in range(args.naive_trials)]
    started = time.time()
    collected: dict = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for case, n_runs, out in pool.map(_trial, jobs, chunksize=25):
            for name, est in out.items():
                collected.setdefault((n_runs, case, name), []).append(est)
    elapsed = time.time() - started

    rows = []
    for (n_runs, case, name), ests in collected.items():
        stat = name.removeprefix("naive-")
        rows.append({
            "runs": n_runs, "case": case, "statistic": stat,
            "bootstrap": "points" if name.startswith("naive-") else "runs",
            "trials": len(ests), "true_r2": truths[case][stat], **summarize(np.array(ests), truths[case][stat]),
        })
    rows.sort(key=lambda r: (r["case"] == "strong", r["runs"], r["case"], r["statistic"], r["bootstrap"]))

    print(f"{'R':>3} {'case':9} {'stat':9} {'boot':6} {'true':>7} {'mean':>7} {'bias':>8} "
          f"{'coverage':>14} {'width':>6}")
    for r in rows:
        print(f"{r['runs']:3d} {r['case']:9} {r['statistic']:9} {r['bootstrap']:6} {r['true_r2']:7.4f} "
              f"{r['mean_estimate']:7.4f} {r['bias']:+8.4f} {r['coverage']:7.3f} ±{r['coverage_se']:.3f} "
              f"{r['mean_width']:6.3f}")
    print(f"{len(jobs)} studies in {elapsed:.0f} s on {args.workers} workers")

    report = {
        "description": "Percentile 95% cluster (run-level) bootstrap of R^2 (identity and fitted) against known "
                       "truth; process and truth in bench/validate_r2_bootstrap.py",
        "process": {"x": "L_r + rise_r * j/(J_r-1), L_r~U(0.10,0.45), rise_r~U(0,0.25), J_r~U{2..6}",
                    "y": "a + b*x + u_r + e_rj, u_r~N(0,s_u^2), e_rj~N(0,s_e^2)",
                    "cases": {c: dict(zip(("a", "b", "s_u", "s_e"), p)) for c, p in CASES.items()}},
        "truth": truths, "truth_monte_carlo_2e6_runs": mc_check,
        "n_boot": args.boot, "trials": args.trials, "naive_trials": args.naive_trials,
        "rows": rows,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1), "workers": args.workers,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
