"""Report of an analysis run folder (`curation-loop analyze`): DIR/report/{index.html, summary.json, figures}.

summary.json schema (non-finite numbers become null):
    title, created, kind ("predict-generalization"), config,
    generalization: {n_points, n_runs, points: [{run, label, checkpoint, premem, train_accuracy,
                     train_accuracy_first, memorized, test_accuracy, dev_accuracy, ...}],
                     r2_identity, r2_fit, r2_train_acc (= r2_identity_train_acc), r2_fit_train_acc,
                     r2_identity_train_acc_first_epoch, r2_fit_train_acc_first_epoch:
                         {value, ci_low, ci_high, n_runs, n_points}   (95% percentile bootstrap over runs),
                     line, line_train_acc, line_train_acc_first_epoch: {slope, intercept},
                     gap: {target, predictor, pearson, r2_identity, r2_fit}},
    tau: {parameter (tau | floor_scale), mode, auto, used, configured, calibrated, plateau, r2_dev,
          curve: [{shift, value, r2_dev, mse_dev, r2_test}]}   (r2_test is for information: it never chooses),
    robustness: {runs, label, prefixes, edges, n_examples, bins: [{bin, low, high, condition, n_examples, mean,
                 ci_low, ci_high}]} | null,
    runs: [run.json records], compute_seconds: {stage: seconds}, notes
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from loop.analysis.results import SweepTables, analysis_results, heatmap_data
from loop.store import RunStore, layout
from reports.analysis_sections import ANALYSIS_SECTIONS, FIGURE_NAMES, AnalysisData
from reports.page import num, write_page
from reports.sections import assemble
from reports.summary import clean


def build_analysis_summary(root: Path) -> tuple[dict, SweepTables, dict]:
    """The summary dict (schema above), with the sweep's tables and results it was read from."""
    tables = SweepTables(root)
    results = analysis_results(tables)
    timings = pl.concat([pl.read_parquet(p) for p in sorted(root.glob(layout.analysis_tables(layout.TIMINGS)))])
    by_stage = timings.group_by("stage").agg(pl.col("seconds").sum()).sort("stage")
    cfg = tables.cfg
    summary = {
        "title": f"curation-loop analysis: {cfg.name}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kind": "predict-generalization",
        "config": {"model": cfg.model.name_or_path, "data": cfg.data.source, "task": cfg.task, "seeds": cfg.seeds,
                   "n_samples_train": cfg.dynamics.n_samples, "n_samples_eval": cfg.evaluation.n_samples,
                   "tau_mode": cfg.dynamics.tau_mode},
        "generalization": results["generalization"],
        "tau": results["tau"],
        "robustness": results["robustness"],
        "runs": results["runs"],
        "compute_seconds": dict(zip(by_stage["stage"].to_list(), by_stage["seconds"].to_list())),
        "notes": _notes(results),
    }
    return clean(summary), tables, results


def _notes(results: dict) -> list[str]:
    tau = results["tau"]
    notes = []
    if tau["calibrated"] is not None:
        notes.append(f"{tau['parameter']} calibrated on the dev split: {tau['calibrated']:.4g} (dev R² "
                     f"{num(tau['r2_dev'])}; candidates from {tau['plateau'][0]:.4g} to {tau['plateau'][1]:.4g} tie). "
                     "The test set never entered the choice; its curve is drawn for information only.")
    if not tau["auto"] and tau["configured"] is not None:
        notes.append(f"The R² figures use the configured {tau['parameter']} = {tau['configured']:.4g} "
                     "(set it to auto to use the calibrated one).")
    g = results["generalization"]
    if g.get("n_runs", 0) < 5:
        notes.append(f"Only {g.get('n_runs', 0)} runs: the bootstrap intervals over runs are rough.")
    return notes


def write_analysis_report(run_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Write run_dir/report/ for an analysis run; returns index.html's path (written last; of the local copy where
    run_dir is an fsspec URL, the report pushed to it as well)."""
    store = RunStore(run_dir, cache_dir)
    store.pull_all()
    index = _write_analysis_report(store.root)
    store.publish("report")
    return index


def _write_analysis_report(root: Path) -> Path:
    summary, tables, results = build_analysis_summary(root)
    data = AnalysisData(summary, heatmap_data(tables, results["shift"]))
    return write_page(root / "report", summary, assemble(ANALYSIS_SECTIONS, data), figure_names=FIGURE_NAMES)
