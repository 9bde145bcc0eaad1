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

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from loop.analysis.results import SweepTables, analysis_results, heatmap_data
from reports.analysis_figures import plot_heatmap, plot_prediction, plot_robustness, plot_tau_curve
from loop.store import RunStore
from reports.files import atomic_write_text
from reports.page import CSS, escape, num, table_html
from reports.summary import clean

_PREDICTORS = (("pre-memorization accuracy", ""), ("train accuracy", "_train_acc"),
               ("train accuracy after the first checkpoint", "_train_acc_first_epoch"))


def _ci(block: dict | None) -> str:
    if not block or block.get("value") is None:
        return "–"
    low, high = block.get("ci_low"), block.get("ci_high")
    interval = "n/a" if low is None or high is None else f"{low:.2f}, {high:.2f}"
    return f"{block['value']:.3f} [{interval}]"


def build_analysis_summary(root: Path) -> tuple[dict, SweepTables, dict]:
    tables = SweepTables(root)
    results = analysis_results(tables)
    timings = pl.concat([pl.read_parquet(p) for p in sorted(root.glob("analysis/seed-*/run-*/timings.parquet"))])
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


def render_analysis_html(summary: dict, figures: dict[str, bytes]) -> str:
    g, tau, rob = summary["generalization"], summary["tau"], summary["robustness"]

    def img(name: str, alt: str) -> str:
        if name not in figures:
            return ""
        return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(figures[name]).decode()}'>"

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(summary['title'])}</title>"
             f"<style>{CSS}</style></head><body><h1>{escape(summary['title'])}</h1>",
             f"<p>Created {escape(summary['created'])}. {g.get('n_runs', 0)} fine-tuning runs from the base model, "
             f"{g.get('n_points', 0)} (run, checkpoint) points. Intervals: 95% percentile bootstrap over runs (a run's "
             "checkpoints are resampled together).</p>"]
    rows = []
    for name, suffix in _PREDICTORS:
        rows.append([name, _ci(g.get(f"r2_identity{suffix}")), _ci(g.get(f"r2_fit{suffix}")),
                     num((g.get(f"line{suffix}") or {}).get("slope")),
                     num((g.get(f"line{suffix}") or {}).get("intercept"))])
    parts.append("<h2>Predicting test accuracy</h2><p>R² on the identity line: 1 − Σ(test − predictor)² / "
                 "Σ(test − mean test)², the paper's form (no fitted parameter). Fitted: R² of a least-squares line.</p>"
                 + table_html(["predictor", "R² on y = x [95% CI]", "R² fitted line [95% CI]", "slope", "intercept"], rows))
    if "gap" in g:
        gap = g["gap"]
        parts.append(f"<p>Generalization gap ({escape(gap['target'])}) predicted by {escape(gap['predictor'])}: Pearson r "
                     f"{_ci(gap['pearson'])}, R² on y = x {_ci(gap['r2_identity'])}, fitted {_ci(gap['r2_fit'])}.</p>")
    parts.append(img("prediction.png", "test accuracy against pre-memorization accuracy"))
    parts.append("<h2>Memorization threshold, calibrated on dev</h2>")
    if tau["calibrated"] is not None:
        parts.append(f"<p>{escape(tau['parameter'])} = {tau['calibrated']:.4g} minimises the squared error of dev "
                     f"accuracy on y = PreMem, which maximises the dev R² ({num(tau['r2_dev'])}); "
                     f"used for every figure here: {num(tau['used'], 4)}. The test curve is drawn for information "
                     "only: it never chooses.</p>" + img("tau.png", "R² against the threshold"))
    else:
        parts.append("<p>No dev split: nothing to calibrate on.</p>")
    if rob is not None:
        parts.append("<h2>Robustness to a forced answer prefix</h2>" + img("robustness.png", "robustness bins"))
        parts.append(table_html(["bin", "condition", "examples", "mean accuracy [95% CI]"],
                            [[b["bin"], b["condition"], b["n_examples"],
                              _ci({"value": b["mean"], "ci_low": b["ci_low"], "ci_high": b["ci_high"]})]
                             for b in rob["bins"]]))
    parts.append("<h2>Per-example dynamics</h2>" + img("heatmap.png", "per-example heat map"))
    pts = [[p["label"], p["checkpoint"], num(p["premem"]), num(p["train_accuracy"]), num(p.get("dev_accuracy")),
            num(p["test_accuracy"]), num(p["memorized"])] for p in g["points"]]
    parts.append("<h2>Points</h2>" + table_html(["run", "checkpoint", "pre-mem acc", "train acc", "dev acc", "test acc",
                                            "memorized"], pts))
    parts.append("<h2>Compute (seconds, all runs)</h2>" + table_html(
        ["stage", "seconds"], [[k, num(v, 1)] for k, v in summary["compute_seconds"].items()]))
    if summary["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in summary["notes"]) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_analysis_report(run_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Write run_dir/report/ for an analysis run; returns index.html's path (written last; of the local copy where
    run_dir is an fsspec URL, the report pushed to it as well)."""
    store = RunStore(run_dir, cache_dir)
    store.pull_all()
    index = _write_analysis_report(store.root)
    store.publish("report")
    return index


def _write_analysis_report(root: Path) -> Path:
    out = root / "report"
    summary, tables, results = build_analysis_summary(root)
    figures: dict[str, bytes] = {}
    names = ("prediction.png", "tau.png", "robustness.png", "heatmap.png")
    for name in names:  # a figure this report does not draw must not survive from an earlier one
        (out / name).unlink(missing_ok=True)
    g = summary["generalization"]
    plot_prediction(g["points"], out / "prediction.png", r2_identity=(g.get("r2_identity") or {}).get("value"))
    if summary["tau"]["curve"]:
        plot_tau_curve(summary["tau"], out / "tau.png")
    if summary["robustness"] is not None:
        plot_robustness(summary["robustness"], out / "robustness.png")
    heat = heatmap_data(tables, results["shift"])
    if heat is not None:
        plot_heatmap(heat, out / "heatmap.png")
    for name in names:
        if (out / name).exists():
            figures[name] = (out / name).read_bytes()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return atomic_write_text(out / "index.html", render_analysis_html(summary, figures))
