"""Write the run report folder: curves.png, summary.json and a self-contained index.html.

Every number in index.html is read from the same dict that becomes summary.json (its sections are
reports.run_sections), so the two cannot disagree. index.html is written last: its presence means the report is
complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from reports.efficiency import REFERENCE
from reports.page import write_page
from reports.run_sections import RUN_SECTIONS
from reports.sections import assemble
from reports.summary import build_summary


def write_report(
    evals: pl.DataFrame,
    timings: pl.DataFrame,
    out_dir: str | os.PathLike,
    *,
    title: str,
    config_summary: dict,
    notes=(),
    tables=(),
    contrasts=(),
    reference: str = REFERENCE,
) -> Path:
    """Write out_dir/curves.png, out_dir/summary.json and out_dir/index.html (each atomically); return index.html's
    path.

    Reads an evaluations frame (EVAL_SCHEMA) and a timings frame (TIMING_SCHEMA); the summary
    schema is in reports.summary. `tables` are extra sections, each a dict with title, caption,
    columns and rows (lists of cells), kept in summary.json under "tables". `contrasts`: (strategy, against) pairs
    compared replicate by replicate (`reports.contrasts`). index.html embeds the figure, so it can be moved on its own.
    """
    summary = build_summary(evals, timings, reference=reference, title=title,
                            config_summary=config_summary, notes=notes, tables=tables,
                            contrasts=contrasts)
    return write_page(Path(out_dir), summary, assemble(RUN_SECTIONS, summary))
