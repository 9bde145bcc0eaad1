"""The analysis report's sections (`curation-loop analyze`), each a function of `AnalysisData`.

`ANALYSIS_SECTIONS` is the page in order. To add a figure or a table, write a builder
`(data: AnalysisData) -> section | None` here and put it in the list where it should appear. Numbers come from
the summary (summary.json's dict); only the heat map reads per-example data, which is too large for summary.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.analysis_figures import draw_heatmap, draw_prediction, draw_robustness, draw_tau_curve
from reports.page import escape, list_html, num
from reports.sections import Figure, Table, Text

# The figures this report may draw: one not drawn this time is removed from the folder (reports.page.write_page).
FIGURE_NAMES = ("prediction.png", "tau.png", "robustness.png", "heatmap.png")

_PREDICTORS = (("pre-memorization accuracy", ""), ("train accuracy", "_train_acc"),
               ("train accuracy after the first checkpoint", "_train_acc_first_epoch"))


@dataclass(frozen=True)
class AnalysisData:
    """What the sections read: the summary, and the heat map's per-example matrices (None: no run to draw)."""

    summary: dict
    heatmap: dict | None = None


def interval(block: dict | None) -> str:
    """value [low, high] of an R² or correlation block (a bootstrap over runs); "–" where there is none."""
    if not block or block.get("value") is None:
        return "–"
    low, high = block.get("ci_low"), block.get("ci_high")
    between = "n/a" if low is None or high is None else f"{low:.2f}, {high:.2f}"
    return f"{block['value']:.3f} [{between}]"


def introduction(data: AnalysisData) -> Text:
    s, g = data.summary, data.summary["generalization"]
    return Text(f"<p>Created {escape(s['created'])}. {g.get('n_runs', 0)} fine-tuning runs from the base model, "
                f"{g.get('n_points', 0)} (run, checkpoint) points. Intervals: 95% percentile bootstrap over runs (a "
                "run's checkpoints are resampled together).</p>")


def prediction_table(data: AnalysisData) -> Table:
    g = data.summary["generalization"]
    rows = [[name, interval(g.get(f"r2_identity{suffix}")), interval(g.get(f"r2_fit{suffix}")),
             num((g.get(f"line{suffix}") or {}).get("slope")), num((g.get(f"line{suffix}") or {}).get("intercept"))]
            for name, suffix in _PREDICTORS]
    return Table(["predictor", "R² on y = x [95% CI]", "R² fitted line [95% CI]", "slope", "intercept"], rows,
                 heading="Predicting test accuracy",
                 intro="<p>R² on the identity line: 1 − Σ(test − predictor)² / Σ(test − mean test)², "
                 "the paper's form (no fitted parameter). Fitted: R² of a least-squares line.</p>")


def generalization_gap(data: AnalysisData) -> Text | None:
    gap = data.summary["generalization"].get("gap")
    if gap is None:
        return None
    return Text(f"<p>Generalization gap ({escape(gap['target'])}) predicted by {escape(gap['predictor'])}: Pearson r "
                f"{interval(gap['pearson'])}, R² on y = x {interval(gap['r2_identity'])}, fitted "
                f"{interval(gap['r2_fit'])}.</p>")


def prediction_figure(data: AnalysisData) -> Figure:
    g = data.summary["generalization"]
    png = draw_prediction(g["points"], r2_identity=(g.get("r2_identity") or {}).get("value"))
    return Figure("prediction.png", png, alt="test accuracy against pre-memorization accuracy")


def threshold(data: AnalysisData) -> list:
    """The calibrated threshold in words, with the dev R² over every candidate (the test curve for information)."""
    tau = data.summary["tau"]
    heading = Text("", heading="Memorization threshold, calibrated on dev")
    if tau["calibrated"] is None:
        return [heading, Text("<p>No dev split: nothing to calibrate on.</p>")]
    words = (f"<p>{escape(tau['parameter'])} = {tau['calibrated']:.4g} minimises the squared error of dev accuracy on "
             f"y = PreMem, which maximises the dev R² ({num(tau['r2_dev'])}); used for every figure here: "
             f"{num(tau['used'], 4)}. The test curve is drawn for information only: it never chooses.</p>")
    if not tau["curve"]:
        return [heading, Text(words)]
    return [heading, Figure("tau.png", draw_tau_curve(tau), alt="R² against the threshold", intro=words)]


def robustness(data: AnalysisData) -> list | None:
    rob = data.summary["robustness"]
    if rob is None:
        return None
    rows = [[b["bin"], b["condition"], b["n_examples"],
             interval({"value": b["mean"], "ci_low": b["ci_low"], "ci_high": b["ci_high"]})] for b in rob["bins"]]
    return [Figure("robustness.png", draw_robustness(rob), alt="robustness bins",
                   heading="Robustness to a forced answer prefix"),
            Table(["bin", "condition", "examples", "mean accuracy [95% CI]"], rows)]


def heatmap(data: AnalysisData) -> Text | Figure:
    if data.heatmap is None:
        return Text("", heading="Per-example dynamics")
    return Figure("heatmap.png", draw_heatmap(data.heatmap), alt="per-example heat map",
                  heading="Per-example dynamics")


def points(data: AnalysisData) -> Table:
    rows = [[p["label"], p["checkpoint"], num(p["premem"]), num(p["train_accuracy"]), num(p.get("dev_accuracy")),
             num(p["test_accuracy"]), num(p["memorized"])] for p in data.summary["generalization"]["points"]]
    return Table(["run", "checkpoint", "pre-mem acc", "train acc", "dev acc", "test acc", "memorized"], rows,
                 heading="Points")


def compute(data: AnalysisData) -> Table:
    return Table(["stage", "seconds"], [[k, num(v, 1)] for k, v in data.summary["compute_seconds"].items()],
                 heading="Compute (seconds, all runs)")


def notes(data: AnalysisData) -> Text | None:
    if not data.summary["notes"]:
        return None
    return Text(list_html(data.summary["notes"]), heading="Notes")


ANALYSIS_SECTIONS = (introduction, prediction_table, generalization_gap, prediction_figure, threshold, robustness,
                     heatmap, points, compute, notes)
