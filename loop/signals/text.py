"""`reasoning_lines`: the number of lines of each seed's reference solution (the paper's length heuristic reads the
count of newlines, a proxy for the number of reasoning steps)."""

import polars as pl

from loop.signals.registry import SignalContext, signal


@signal("reasoning_lines", scope="static", level="seed")
def reasoning_lines(ctx: SignalContext) -> pl.DataFrame:
    """Lines in each seed's reference solution (newlines + 1)."""
    return ctx.rows.select(pl.col("id").alias("seed_id"),
                           reasoning_lines=(pl.col("solution").str.count_matches("\n") + 1).cast(pl.Float64))
