"""Reports: pure functions from stored evaluation and timing tables to figures and tables.

Reads frames with the EVAL_SCHEMA / TIMING_SCHEMA columns of loop.schema; never imports torch,
transformers or Prefect. Entry point: `write_report`.
"""

from reports.area import area_under_curve, deficiency, seed_aulc, strategy_aulc
from reports.compute import compute_by_stage
from reports.curves import curve_points, fold_shared
from reports.efficiency import (
    REFERENCE,
    Ratio,
    data_efficiency_ratio,
    headline_ratios,
    iid_examples_needed,
    seed_ratios,
    strategy_ratios,
)
from reports.figures import plot_curves
from reports.render import render_html, write_report
from reports.stats import Interval, mean_interval
from reports.summary import build_summary

__all__ = [
    "REFERENCE", "Interval", "Ratio", "area_under_curve", "build_summary", "compute_by_stage", "curve_points",
    "data_efficiency_ratio", "deficiency", "fold_shared", "headline_ratios", "iid_examples_needed",
    "mean_interval", "plot_curves", "render_html", "seed_aulc", "seed_ratios", "strategy_aulc",
    "strategy_ratios", "write_report",
]
