"""The run report's sections, each a function of the summary (reports.summary's dict, which becomes summary.json).

`RUN_SECTIONS` is the page in order. To add a figure or a table, write a builder `(summary) -> section | None`
here and put it in the list where it should appear. Every number shown is read from the summary, the figure's
points too, so the page and summary.json cannot disagree.
"""

from __future__ import annotations

import json
import math

import polars as pl

from reports.curves import CURVE_POINT_SCHEMA
from reports.figures import draw_curves, format_n
from reports.page import escape, list_html, num
from reports.sections import Figure, Table, Text


def interval(block: dict, digits: int = 3) -> str:
    """mean [low, high]; "n/a" for a missing interval (one replicate), "≥ low"/"≤ high" for a bound's one side."""
    if block.get("mean") is None:
        return "–"
    low, high = block.get("ci_low"), block.get("ci_high")
    if low is None and high is None:
        return f"{num(block['mean'], digits)} [n/a]"
    if high is None:
        return f"{num(block['mean'], digits)} [≥ {num(low, digits)}]"
    if low is None:
        return f"{num(block['mean'], digits)} [≤ {num(high, digits)}]"
    return f"{num(block['mean'], digits)} [{num(low, digits)}, {num(high, digits)}]"


def _curve_error(ratio: dict) -> str:
    """The curve error as a factor in examples (×1.00 where none), marked ⚠ where flagged."""
    error = ratio.get("curve_error")
    if error is None:
        return "–"
    return f"×{math.exp(abs(error)):.2f}" + (" ⚠" if ratio.get("flagged") else "")


def _bound(bound: str | None) -> str:
    return {None: "", "lower": "≥ (lower bound)", "upper": "≤ (upper bound)",
            "undefined": "undefined: the i.i.d. curve does not rise"}[bound]


def introduction(summary: dict) -> Text:
    return Text(f"<p>Created {escape(summary['created'])}; {summary['n_seeds']} paired seed(s) "
                f"{escape(summary['seeds'])}; reference (i.i.d. scaling): <code>{escape(summary['reference'])}</code>. "
                "Accuracy intervals are 95% Student-t over seeds; ratio intervals come from a bootstrap over seeds of "
                "the log-ratio (see below).</p>")


def warnings(summary: dict) -> list[Text]:
    return [Text(f"<p class='warn'>{escape(w)}</p>") for w in summary["warnings"]]


def verdict(summary: dict) -> Text | None:
    if not summary.get("verdict"):
        return None
    return Text(list_html(summary["verdict"]), heading="Verdict")


def headline(summary: dict) -> Table:
    rows = []
    for name, s in summary["strategies"].items():
        r = s["ratio"] or {}
        # Accuracy at the headline budget (the final one the seeds share), else at the last point.
        last = next((p for p in s["points"] if p["n_examples"] == r.get("n_examples")), s["points"][-1])
        rows.append([
            name, format_n(r.get("n_examples", last["n_examples"])),
            interval({"mean": last["accuracy_mean"], "ci_low": last["ci_low"], "ci_high": last["ci_high"]}),
            interval(r, 2), _bound(r.get("bound")), num(r.get("max_measurable"), 1), num(r.get("detectable_ratio"), 2),
            r.get("replicates_for_1_2x") if r.get("replicates_for_1_2x") is not None else "–",
            interval(s["aulc"]["diff_vs_reference"], 4), interval(s["deficiency"], 3),
            num(s["compute_seconds"]["total"], 1),
        ])
    return Table(["strategy", "n", "accuracy [95% CI]", "data-efficiency ratio [95% CI]", "bound",
                  "largest measurable", "detectable at 80% power", "seeds for 1.2x", "ΔAULC vs reference [95% CI]",
                  "deficiency [95% CI]", "compute s"], rows, heading="Headline (final budget)")


def learning_curves(summary: dict) -> Figure:
    """Test accuracy against training examples, drawn from the summary's curve points."""
    points = pl.DataFrame([{"strategy": name, **p} for name, s in summary["strategies"].items() for p in s["points"]],
                          schema=CURVE_POINT_SCHEMA)
    return Figure("curves.png", draw_curves(points, reference=summary["reference"]),
                  alt="test accuracy vs training examples", heading="Learning curves")


def curve_points(summary: dict) -> Table:
    rows = [[n, p["n_examples"], num(p["accuracy_mean"]), num(p["ci_low"]), num(p["ci_high"]), p["n_seeds"]]
            for n, s in summary["strategies"].items() for p in s["points"]]
    return Table(["strategy", "n_examples", "accuracy", "ci_low", "ci_high", "seeds"], rows, heading="Curve points")


def ratios(summary: dict) -> Table:
    rows = [[n, r["n_examples"], interval(r, 2), r["n_seeds"], _bound(r["bound"]), num(r.get("max_measurable"), 1),
             r.get("estimator") or "", _curve_error(r)]
            for n, s in summary["strategies"].items() for r in s["ratios"]]
    return Table(
        ["strategy", "n_examples", "geometric mean [95% CI]", "seeds", "bound", "largest measurable", "estimator",
         "curve error"], rows, heading="Data-efficiency ratio",
        intro="<p>DE(a) = n<sub>R</sub>(a) / n: i.i.d. examples needed to reach the strategy's "
        "accuracy a, over the strategy's examples n. Paired: the strategy's accuracy minus random's at the same n and "
        "seed, turned into examples along the fitted i.i.d. curve (increasing in log n, its shape pooled over seeds), "
        "so that random and every strategy's round 0 are exactly 1; fitted (where random has no point at n): the "
        "accuracy located on the fitted curve. The geometric mean over seeds, with a 95% interval from a bootstrap "
        "over seeds. A lower bound (≥) means the strategy beat the i.i.d. curve's largest budget on some seed; the "
        "largest measurable ratio is that budget over n. Curve error: how far the fitted curve misreads random's own "
        "points between n and n<sub>R</sub>, as a factor in examples; ⚠ where it exceeds the interval's half-width "
        "(the interval then understates the uncertainty).</p>")


def contrasts(summary: dict) -> Table | None:
    if not summary.get("contrasts"):
        return None
    rows = [[c["strategy"], c["against"], c["n_examples"],
             interval(summary["strategies"][c["against"]]["ratio"] or {}, 2), interval(c, 2), c["n_seeds"],
             c["left_out"]] for c in summary["contrasts"]]
    return Table(
        ["strategy", "against", "n_examples", "against's ratio vs i.i.d. [95% CI]",
         "strategy over against, paired [95% CI]", "seeds", "left out"], rows,
        heading="Head to head: each auto controller against the arms it chooses from",
        intro="<p>Per replicate, the strategy's ratio over the other's at the same n (the i.i.d. examples each one's "
        "accuracy is worth), the geometric mean over replicates with a 95% t interval on the log scale. Above 1: "
        "the strategy needed fewer examples for what it reached. Pairing by replicate removes what two strategies "
        "of one replicate share, so this interval is narrower than comparing their two ratios above. A replicate "
        "where either ratio is a bound is left out.</p>")


def iid_fit(summary: dict) -> Table | None:
    if not summary.get("iid_fit"):
        return None
    rows = [[r["n_examples"], interval(r, 2), r["n_seeds"]] for r in summary["iid_fit"]]
    return Table(
        ["n_examples", "random read through the curve [95% CI]", "seeds"], rows,
        heading="How well the fitted i.i.d. curve reads random's own points",
        intro="<p>Random's accuracy at each of its budgets, read through the fitted curve as if it were a strategy: "
        "1 where the curve passes through it, above 1 where the curve lies below random's mean there. Its departures "
        "are the fit's residuals, in examples; the paired ratios above carry only their change between n and "
        "n<sub>R</sub>.</p>")


def area(summary: dict) -> Table:
    rows = [[n, f"{s['aulc']['n_min']}–{s['aulc']['n_max']}", interval(s["aulc"], 4),
             interval(s["aulc"]["diff_vs_reference"], 4), interval(s["deficiency"]), num(s["deficiency"]["median"]),
             s["aulc"]["n_seeds"]]
            for n, s in summary["strategies"].items()]
    return Table(
        ["strategy", "n range", "AULC [95% CI]", "ΔAULC [95% CI]", "deficiency [95% CI]", "median", "seeds"], rows,
        heading="Area under the learning curve and deficiency",
        intro="<p>AULC: trapezoid area over ln n divided by the ln n range. ΔAULC: paired by seed, both curves on "
        "their shared n range. Deficiency (Baram et al. 2004): "
        "Σ<sub>t</sub>[R(n<sub>K</sub>) − acc(n<sub>t</sub>)] / "
        "Σ<sub>t</sub>[R(n<sub>K</sub>) − R(n<sub>t</sub>)], below 1 is better than random.</p>")


def compute(summary: dict) -> Table:
    blocks = [("shared (round 0)", summary["shared_compute_seconds"])] + [
        (n, s["compute_seconds"]) for n, s in summary["strategies"].items()]
    rows = [[n, stage, num(sec, 1), num(sec / b["total"] if b["total"] else None, 3)]
            for n, b in blocks for stage, sec in b["by_stage"].items()]
    rows += [[n, "total", num(b["total"], 1), ""] for n, b in blocks if b["by_stage"]]
    return Table(["strategy", "stage", "seconds", "share"], rows, heading="Compute per stage (seconds, all seeds)")


def configuration(summary: dict) -> Table:
    rows = [[k, v if isinstance(v, str) else json.dumps(v, default=str)] for k, v in summary["config"].items()]
    return Table(["key", "value"], rows, heading="Configuration")


def extra_tables(summary: dict) -> list[Table]:
    """The tables the caller passed in (kept in summary.json under "tables"): run dynamics, selections, decisions."""
    return [Table(t["columns"], t["rows"], heading=escape(t["title"]), intro=f"<p>{escape(t.get('caption', ''))}</p>")
            for t in summary.get("tables", [])]


def notes(summary: dict) -> Text | None:
    if not summary["notes"]:
        return None
    return Text(list_html(summary["notes"]), heading="Notes")


RUN_SECTIONS = (introduction, warnings, verdict, headline, learning_curves, curve_points, ratios, contrasts, iid_fit,
                area, compute, configuration, extra_tables, notes)
