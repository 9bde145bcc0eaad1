"""Write the report folder: curves.png, summary.json and a self-contained index.html.

Every number in index.html is read from the same dict that becomes summary.json, so the two
cannot disagree. index.html is written last: its presence means the report is complete.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path

import polars as pl

from reports.curves import curve_points
from reports.efficiency import REFERENCE
from reports.figures import format_n, plot_curves
from reports.files import atomic_write_text
from reports.summary import build_summary

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.warn{color:#a40}code{background:#f6f6f6;padding:0 .2em}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(block: dict, digits: int = 3) -> str:
    """mean [low, high]; "n/a" for a missing interval (one replicate), "≥ low"/"≤ high" for a bound's one side."""
    if block.get("mean") is None:
        return "–"
    low, high = block.get("ci_low"), block.get("ci_high")
    if low is None and high is None:
        return f"{_num(block['mean'], digits)} [n/a]"
    if high is None:
        return f"{_num(block['mean'], digits)} [≥ {_num(low, digits)}]"
    if low is None:
        return f"{_num(block['mean'], digits)} [≤ {_num(high, digits)}]"
    return f"{_num(block['mean'], digits)} [{_num(low, digits)}, {_num(high, digits)}]"


def _curve_error(ratio: dict) -> str:
    """The curve error as a factor in examples (×1.00 where none), marked ⚠ where flagged."""
    error = ratio.get("curve_error")
    if error is None:
        return "–"
    return f"×{math.exp(abs(error)):.2f}" + (" ⚠" if ratio.get("flagged") else "")


def _bound(bound: str | None) -> str:
    return {None: "", "lower": "≥ (lower bound)", "upper": "≤ (upper bound)", "mixed": "mixed bounds",
            "undefined": "undefined: the i.i.d. curve does not rise"}[bound]


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _headline_rows(summary: dict) -> list[list]:
    rows = []
    for name, s in summary["strategies"].items():
        r = s["ratio"] or {}
        # Accuracy at the headline budget (the final one the seeds share), else at the last point.
        last = next((p for p in s["points"] if p["n_examples"] == r.get("n_examples")), s["points"][-1])
        rows.append([
            name, format_n(r.get("n_examples", last["n_examples"])),
            _ci({"mean": last["accuracy_mean"], "ci_low": last["ci_low"], "ci_high": last["ci_high"]}),
            _ci(r, 2), _bound(r.get("bound")), _num(r.get("max_measurable"), 1), _num(r.get("detectable_ratio"), 2),
            r.get("replicates_for_1_2x") if r.get("replicates_for_1_2x") is not None else "–",
            _ci(s["aulc"]["diff_vs_reference"], 4), _ci(s["deficiency"], 3), _num(s["compute_seconds"]["total"], 1),
        ])
    return rows


def render_html(summary: dict, png: bytes) -> str:
    """The index.html text for a `build_summary` dict and the curves PNG (embedded as base64)."""
    ref = summary["reference"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(summary['title'])}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(summary['title'])}</h1>",
             f"<p>Created {_e(summary['created'])}; {summary['n_seeds']} paired seed(s) {_e(summary['seeds'])}; "
             f"reference (i.i.d. scaling): <code>{_e(ref)}</code>. Accuracy intervals are 95% Student-t over seeds; "
             "ratio intervals come from a bootstrap over seeds of the log-ratio (see below).</p>"]
    parts += [f"<p class='warn'>{_e(w)}</p>" for w in summary["warnings"]]
    if summary.get("verdict"):
        parts.append("<h2>Verdict</h2><ul>" + "".join(f"<li>{_e(v)}</li>" for v in summary["verdict"]) + "</ul>")
    parts.append("<h2>Headline (final budget)</h2>" + _table(
        ["strategy", "n", "accuracy [95% CI]", "data-efficiency ratio [95% CI]", "bound", "largest measurable",
         "detectable at 80% power", "seeds for 1.2x", "ΔAULC vs reference [95% CI]", "deficiency [95% CI]",
         "compute s"], _headline_rows(summary)))
    png64 = base64.b64encode(png).decode("ascii")
    parts.append(f"<h2>Learning curves</h2><img alt='test accuracy vs training examples' src='data:image/png;base64,{png64}'>")

    rows = [[n, p["n_examples"], _num(p["accuracy_mean"]), _num(p["ci_low"]), _num(p["ci_high"]), p["n_seeds"]]
            for n, s in summary["strategies"].items() for p in s["points"]]
    parts.append("<h2>Curve points</h2>" + _table(["strategy", "n_examples", "accuracy", "ci_low", "ci_high", "seeds"], rows))

    rows = [[n, r["n_examples"], _ci(r, 2), r["n_seeds"], _bound(r["bound"]), _num(r.get("max_measurable"), 1),
             r.get("estimator") or "", _curve_error(r)]
            for n, s in summary["strategies"].items() for r in s["ratios"]]
    parts.append(
        "<h2>Data-efficiency ratio</h2><p>DE(a) = n<sub>R</sub>(a) / n: i.i.d. examples needed to reach the strategy's "
        "accuracy a, over the strategy's examples n. Paired: the strategy's accuracy minus random's at the same n and "
        "seed, turned into examples along the fitted i.i.d. curve (increasing in log n, its shape pooled over seeds), "
        "so that random and every strategy's round 0 are exactly 1; fitted (where random has no point at n): the "
        "accuracy located on the fitted curve. The geometric mean over seeds, with a 95% interval from a bootstrap "
        "over seeds. A lower bound (≥) means the strategy beat the i.i.d. curve's largest budget on some seed; the "
        "largest measurable ratio is that budget over n. Curve error: how far the fitted curve misreads random's own "
        "points between n and n<sub>R</sub>, as a factor in examples; ⚠ where it exceeds the interval's half-width "
        "(the interval then understates the uncertainty).</p>"
        + _table(["strategy", "n_examples", "geometric mean [95% CI]", "seeds", "bound", "largest measurable",
                  "estimator", "curve error"], rows))
    if summary.get("iid_fit"):
        rows = [[r["n_examples"], _ci(r, 2), r["n_seeds"]] for r in summary["iid_fit"]]
        parts.append(
            "<h2>How well the fitted i.i.d. curve reads random's own points</h2><p>Random's accuracy at each of its "
            "budgets, read through the fitted curve as if it were a strategy: 1 where the curve passes through it, "
            "above 1 where the curve lies below random's mean there. Its departures are the fit's residuals, in "
            "examples; the paired ratios above carry only their change between n and n<sub>R</sub>.</p>"
            + _table(["n_examples", "random read through the curve [95% CI]", "seeds"], rows))

    rows = [[n, f"{s['aulc']['n_min']}–{s['aulc']['n_max']}", _ci(s["aulc"], 4), _ci(s["aulc"]["diff_vs_reference"], 4),
             _ci(s["deficiency"]), _num(s["deficiency"]["median"]), s["aulc"]["n_seeds"]]
            for n, s in summary["strategies"].items()]
    parts.append(
        "<h2>Area under the learning curve and deficiency</h2><p>AULC: trapezoid area over ln n divided by the ln n "
        "range. ΔAULC: paired by seed, both curves on their shared n range. Deficiency (Baram et al. 2004): "
        "Σ<sub>t</sub>[R(n<sub>K</sub>) − acc(n<sub>t</sub>)] / Σ<sub>t</sub>[R(n<sub>K</sub>) − R(n<sub>t</sub>)], "
        "below 1 is better than random.</p>"
        + _table(["strategy", "n range", "AULC [95% CI]", "ΔAULC [95% CI]", "deficiency [95% CI]", "median", "seeds"], rows))

    blocks = [("shared (round 0)", summary["shared_compute_seconds"])] + [
        (n, s["compute_seconds"]) for n, s in summary["strategies"].items()]
    rows = [[n, stage, _num(sec, 1), _num(sec / b["total"] if b["total"] else None, 3)]
            for n, b in blocks for stage, sec in b["by_stage"].items()]
    rows += [[n, "total", _num(b["total"], 1), ""] for n, b in blocks if b["by_stage"]]
    parts.append("<h2>Compute per stage (seconds, all seeds)</h2>" + _table(["strategy", "stage", "seconds", "share"], rows))

    cfg = [[k, v if isinstance(v, str) else json.dumps(v, default=str)] for k, v in summary["config"].items()]
    parts.append("<h2>Configuration</h2>" + _table(["key", "value"], cfg))
    for extra in summary.get("tables", []):
        parts.append(f"<h2>{_e(extra['title'])}</h2><p>{_e(extra.get('caption', ''))}</p>"
                     + _table(extra["columns"], extra["rows"]))
    if summary["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in summary["notes"]) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    evals: pl.DataFrame,
    timings: pl.DataFrame,
    out_dir: str | os.PathLike,
    *,
    title: str,
    config_summary: dict,
    notes=(),
    tables=(),
    reference: str = REFERENCE,
) -> Path:
    """Write out_dir/curves.png, out_dir/summary.json and out_dir/index.html (each atomically); return index.html's path.

    Reads an evaluations frame (EVAL_SCHEMA) and a timings frame (TIMING_SCHEMA); the summary
    schema is in reports.summary. `tables` are extra sections, each a dict with title, caption,
    columns and rows (lists of cells), kept in summary.json under "tables". index.html embeds the figure, so it can be moved on its own.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = build_summary(evals, timings, reference=reference, title=title,
                            config_summary=config_summary, notes=notes, tables=tables)
    png_path = plot_curves(curve_points(evals), out / "curves.png", reference=reference)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return atomic_write_text(out / "index.html", render_html(summary, png_path.read_bytes()))
