"""Compute spent per strategy and stage, from the timings table.

Selection is only worth its cost if the seconds spent on dynamics and pool scoring buy more
than the same seconds spent training on more random data, so the report shows them side by side.
Round 0 (strategy "shared") is trained once for all strategies and stays its own row.
"""

from __future__ import annotations

import polars as pl

from loop.schema import TIMING_SCHEMA
from reports.curves import check_columns

COMPUTE_SCHEMA: dict[str, pl.DataType] = {
    "strategy": pl.String,
    "stage": pl.String,
    "seconds": pl.Float64,
    "seconds_per_seed": pl.Float64,
    "n_seeds": pl.Int64,
    "share": pl.Float64,
}


def compute_by_stage(timings: pl.DataFrame) -> pl.DataFrame:
    """Seconds per strategy and stage (train, dynamics, pool scoring, eval, ...).

    Reads a timings frame (TIMING_SCHEMA: strategy, seed, round, stage, seconds). Writes strategy,
    stage, seconds (sum over seeds and rounds), seconds_per_seed (that sum divided by the number of
    seeds the strategy has timings for), n_seeds, share (fraction of the strategy's total seconds).
    """
    tm = check_columns(timings, TIMING_SCHEMA, "timings")
    negative = tm.filter(pl.col("seconds") < 0)
    if negative.height:
        raise ValueError(f"timings frame: seconds must be >= 0; first bad row: {negative.row(0, named=True)}")
    if tm.height == 0:
        return pl.DataFrame(schema=COMPUTE_SCHEMA)
    seeds = tm.group_by("strategy").agg(pl.col("seed").n_unique().alias("n_seeds"))
    return (
        tm.group_by("strategy", "stage")
        .agg(pl.col("seconds").sum())
        .join(seeds, on="strategy")
        .with_columns(
            seconds_per_seed=pl.col("seconds") / pl.col("n_seeds"),
            share=pl.col("seconds") / pl.col("seconds").sum().over("strategy"),
        )
        .with_columns(pl.col("share").fill_nan(0.0))
        .select(list(COMPUTE_SCHEMA))
        .cast(COMPUTE_SCHEMA)
        .sort("strategy", "stage")
    )
