"""The report's numbers as one JSON-ready dict: the single source for summary.json and index.html.

Schema (non-finite numbers become null):
    title, created (ISO 8601, UTC), reference ("random"), n_seeds, seeds, config, notes, warnings,
    verdict: [one sentence per strategy, `reports.power.verdict`],
    shared_compute_seconds: compute block of round 0 (trained once for all strategies),
    iid_fit: [{n_examples, mean, ci_low, ci_high, n_seeds}]: random's own point at each of its budgets read
        through the fitted curve (`reports.efficiency.fit_residuals`; 1 where the curve reads it right),
    strategies: {name: {
        points: [{n_examples, accuracy_mean, ci_low, ci_high, n_seeds}],
        ratio: {n_examples, mean, ci_low, ci_high, n_seeds, bound, se_log, max_measurable, estimator, curve_error,
                flagged, detectable_ratio, replicates_for_1_2x,
                per_seed: [{seed, accuracy, iid_examples, ratio, bound}]} | null   (final budget),
        ratios: [{n_examples, mean, ci_low, ci_high, n_seeds, bound, se_log, max_measurable, estimator,
                  curve_error, flagged}]   (every budget),
        aulc: {log_n, n_min, n_max, mean, ci_low, ci_high, n_seeds,
               diff_vs_reference: {mean, ci_low, ci_high, n_seeds}},
        deficiency: {mean, ci_low, ci_high, median, n_seeds},
        compute_seconds: {total, per_seed, by_stage: {stage: seconds}}}},
    contrasts: [{strategy, against, n_examples, mean, ci_low, ci_high, n_seeds, left_out}]: each asked-for pair's
        paired quotient of ratios at the first one's headline size (`reports.contrasts`)
A ratio's mean is the geometric mean over paired replicates (`reports.efficiency`: estimator "paired" against
random's point at the same budget, "fitted" where random has none); ci_low/ci_high are null where undefined (one
replicate; the open side of a bound). bound is null (exact), "lower" (true ratio >= value), "upper" (<=) or
"undefined" (the i.i.d. curve does not rise). curve_error: the fitted curve's misreading between n and n_R in log
examples; flagged where it exceeds the interval's half-width (the verdict says so).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import polars as pl

from loop.schema import COMPUTE_MATCHED, SHARED_STRATEGY
from reports.area import strategy_aulc
from reports.compute import compute_by_stage
from reports.contrasts import strategy_contrasts
from reports.curves import curve_points, fold_shared
from reports.efficiency import (REFERENCE, headline_ratios, iid_residuals, ratio_estimates, seed_ratios,
                                strategy_ratios)
from reports.power import detectable_ratio, replicates_needed, verdict


def clean(value):
    """Recursively make `value` JSON-safe: NaN/inf -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _compute_block(compute: pl.DataFrame, strategy: str) -> dict:
    rows = compute.filter(pl.col("strategy") == strategy)
    if rows.height == 0:
        return {"total": 0.0, "per_seed": None, "by_stage": {}}
    return {
        "total": float(rows["seconds"].sum()),
        "per_seed": float(rows["seconds_per_seed"].sum()),
        "by_stage": dict(zip(rows["stage"].to_list(), rows["seconds"].to_list())),
    }


def _headline_row(strategy: str, headline: pl.DataFrame, per_seed: pl.DataFrame, reference: str) -> dict | None:
    """The strategy's headline ratio (at its final size) with its replicates' own ratios and the comparison's power
    for it; None where it has no headline."""
    head = headline.filter(pl.col("strategy") == strategy)
    if not head.height:
        return None
    row = head.drop("strategy").row(0, named=True)
    seeds = per_seed.filter((pl.col("strategy") == strategy) & (pl.col("n_examples") == row["n_examples"]))
    row["per_seed"] = seeds.select("seed", "accuracy", "iid_examples", "ratio", "bound").to_dicts()
    # Power needs a spread of exact values: the reference is its own curve (no spread), and a censored ratio's
    # spread is that of the curve's edge, not of the strategy.
    spread = None if strategy == reference or row.get("bound") else row["se_log"]
    row["detectable_ratio"] = detectable_ratio(spread, row["n_seeds"])
    row["replicates_for_1_2x"] = replicates_needed(spread, row["n_seeds"])
    return row


def _area_blocks(a: dict) -> dict:
    """A strategy's area under the log-n curve (and its difference from the reference's) and its deficiency, from
    its row of `strategy_aulc`."""
    return {
        "aulc": {
            "log_n": True, "n_min": a["n_min"], "n_max": a["n_max"],
            "mean": a["aulc_mean"], "ci_low": a["aulc_ci_low"], "ci_high": a["aulc_ci_high"], "n_seeds": a["n_seeds"],
            "diff_vs_reference": {
                "mean": a["diff_mean"], "ci_low": a["diff_ci_low"], "ci_high": a["diff_ci_high"],
                "n_seeds": a["diff_n_seeds"],
            },
        },
        "deficiency": {
            "mean": a["deficiency_mean"], "ci_low": a["deficiency_ci_low"], "ci_high": a["deficiency_ci_high"],
            "median": a["deficiency_median"], "n_seeds": a["deficiency_n_seeds"],
        },
    }


def build_summary(
    evals: pl.DataFrame,
    timings: pl.DataFrame,
    *,
    reference: str = REFERENCE,
    title: str = "curation-loop report",
    config_summary: dict | None = None,
    notes=(),
    tables=(),
    contrasts=(),
) -> dict:
    """Assemble every report number from an evaluations frame (EVAL_SCHEMA) and a timings frame
    (TIMING_SCHEMA); see the module docstring for the schema. `contrasts`: (strategy, against) pairs to compare
    replicate by replicate."""
    folded = fold_shared(evals)
    points = curve_points(evals)
    compute = compute_by_stage(timings)
    warnings: list[str] = []
    has_reference = folded.filter(pl.col("strategy") == reference).height > 0
    iid_fit: list[dict] = []
    if has_reference:
        residuals = iid_residuals(evals, reference)
        estimates = ratio_estimates(evals, reference, residuals=residuals)
        iid_fit = [{"n_examples": n, "mean": e.value, "ci_low": e.low, "ci_high": e.high, "n_seeds": e.n_replicates}
                   for n, e in sorted(residuals.items())]
        per_seed = seed_ratios(evals, reference, estimates=estimates)
        ratios = strategy_ratios(evals, reference, estimates=estimates)
        headline = headline_ratios(ratios)
        if ratios.filter(pl.col("bound") == "undefined").height:
            warnings.append(f"the {reference!r} curve does not rise with more examples: data-efficiency ratios are "
                            "undefined (the model learns nothing from more data in this range)")
    else:
        warnings.append(f"no {reference!r} strategy in the evaluations: ratios, AULC differences and deficiency "
                        "are empty")
        per_seed = ratios = headline = None
    areas = strategy_aulc(evals, reference)

    strategies = {}
    verdicts: list[str] = []
    for strategy in sorted(points["strategy"].unique().to_list()):
        block: dict = {
            "points": points.filter(pl.col("strategy") == strategy).drop("strategy").to_dicts(),
            "ratio": None,
            "ratios": [],
        }
        if has_reference:
            block["ratios"] = ratios.filter(pl.col("strategy") == strategy).drop("strategy").to_dicts()
            row = _headline_row(strategy, headline, per_seed, reference)
            block["ratio"] = row
            if row is not None and strategy != reference:
                label = (f"{strategy} (the seed set alone, trained for a strategy round's optimizer steps)"
                         if strategy == COMPUTE_MATCHED else strategy)
                verdicts.append(verdict(label, estimates[(strategy, row["n_examples"])]))
        block.update(_area_blocks(areas.filter(pl.col("strategy") == strategy).row(0, named=True)))
        block["compute_seconds"] = _compute_block(compute, strategy)
        strategies[strategy] = block

    headline_sizes = {name: block["ratio"]["n_examples"] for name, block in strategies.items() if block["ratio"]}
    paired = strategy_contrasts(per_seed, contrasts, headline_sizes) if per_seed is not None else []
    seeds = sorted(evals["seed"].unique().to_list())
    return clean({
        "title": title,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference": reference,
        "n_seeds": len(seeds),
        "seeds": seeds,
        "config": config_summary or {},
        "notes": list(notes),
        "warnings": warnings,
        "verdict": verdicts,
        "iid_fit": iid_fit,
        "shared_compute_seconds": _compute_block(compute, SHARED_STRATEGY),
        "strategies": strategies,
        "contrasts": paired,
        "tables": list(tables),
    })
