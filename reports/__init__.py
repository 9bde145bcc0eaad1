"""Reports: pure functions from stored evaluation and timing tables to figures and tables.

Reads frames with the EVAL_SCHEMA / TIMING_SCHEMA columns of loop.schema; never imports torch,
transformers or Prefect. Entry point: `write_report`. A report page is a list of sections (`Text`, `Table`,
`Figure`: reports.sections) that `render_page` turns into HTML; reports.run_sections and
reports.analysis_sections list each report's.
"""

from reports.area import area_under_curve, deficiency, seed_aulc, strategy_aulc
from reports.compute import compute_by_stage
from reports.curves import curve_points, fold_shared
from reports.efficiency import REFERENCE, RatioEstimate, estimate_ratio, headline_ratios, seed_ratios, strategy_ratios
from reports.figures import plot_curves
from reports.page import render_page, write_page
from reports.render import write_report
from reports.sections import Figure, Table, Text, assemble
from reports.stats import Interval, mean_interval
from reports.summary import build_summary

__all__ = [
    "REFERENCE", "Figure", "Interval", "RatioEstimate", "Table", "Text", "area_under_curve", "assemble",
    "build_summary", "compute_by_stage", "curve_points", "deficiency", "estimate_ratio", "fold_shared",
    "headline_ratios", "mean_interval", "plot_curves", "render_page", "seed_aulc", "seed_ratios", "strategy_aulc",
    "strategy_ratios", "write_page", "write_report",
]
