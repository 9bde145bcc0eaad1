"""Reports: pure functions from stored evaluation and timing tables to figures and tables.

Reads frames with the EVAL_SCHEMA / TIMING_SCHEMA columns of loop.schema; never imports torch,
transformers or Prefect. Entry point: `write_report`.
"""

from reports.area import area_under_curve, deficiency, seed_aulc, strategy_aulc
from reports.compute import compute_by_stage
from reports.curves import curve_points, fold_shared
from reports.efficiency import REFERENCE, RatioEstimate, estimate_ratio, headline_ratios, seed_ratios, strategy_ratios
from reports.figures import plot_curves
from reports.render import render_html, write_report
from reports.stats import Interval, mean_interval
from reports.summary import build_summary

__all__ = [
    "REFERENCE", "Interval", "RatioEstimate", "area_under_curve", "build_summary", "compute_by_stage", "curve_points",
    "deficiency", "estimate_ratio", "fold_shared", "headline_ratios",
    "mean_interval", "plot_curves", "render_html", "seed_aulc", "seed_ratios", "strategy_aulc",
    "strategy_ratios", "write_report",
]
