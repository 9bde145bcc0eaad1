"""`premem` and `premem_base`: each seed's pre-memorization accuracy after the round (`loop.dynamics`).

`premem_base` counts the base model as checkpoint 0, never memorized: where the paper scores a seed memorized by
the first checkpoint as 0 (the same as a seed never solved), it keeps what the base model already solved.
"""

import math

import polars as pl

from loop.dynamics.ledger import premem_accuracy
from loop.signals.registry import SignalContext, signal


def _ledger(ctx: SignalContext) -> pl.DataFrame:
    return ctx.ledger.filter(pl.col("epoch").is_not_null()).select("example_id", "epoch", "nll", "n_samples",
                                                                    "n_correct")


@signal("premem", scope="round", level="seed", reads_samples=True)
def premem(ctx: SignalContext) -> pl.DataFrame:
    """Pre-memorization accuracy of each seed at the round's last checkpoint (the paper's Algorithm 1 score)."""
    scores = premem_accuracy(_ledger(ctx), ctx.tau)
    return scores.rename({"example_id": "seed_id"}).filter(pl.col("seed_id").is_in(ctx.rows["id"].to_list()))


@signal("premem_base", scope="round", level="seed", requires=("base_accuracy",), reads_samples=True)
def premem_base(ctx: SignalContext) -> pl.DataFrame:
    """Pre-memorization accuracy with the base model as an unmemorized checkpoint 0 (its sample accuracy)."""
    base = ctx.stored("base_accuracy").join(ctx.rows.select(pl.col("id").alias("seed_id")), on="seed_id")
    n = ctx.cfg.dynamics.n_samples
    zero = base.select(pl.col("seed_id").alias("example_id"), epoch=pl.lit(0, pl.Int64),
                       nll=pl.lit(math.inf),  # never below a threshold: checkpoint 0 is unmemorized
                       n_samples=pl.lit(n, pl.Int64),
                       n_correct=(pl.col("base_accuracy") * n).round().cast(pl.Int64))
    ledger = pl.concat([zero, _ledger(ctx).cast({"epoch": pl.Int64, "n_samples": pl.Int64, "n_correct": pl.Int64})])
    scores = premem_accuracy(ledger, ctx.tau)
    return scores.rename({"example_id": "seed_id", "premem": "premem_base"}).filter(
        pl.col("seed_id").is_in(ctx.rows["id"].to_list()))
