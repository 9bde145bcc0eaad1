"""`base_accuracy`: how often the base model solves each seed (the difficulty the reviewers asked premem be compared
with), from `dynamics.n_samples` samples per seed."""

import polars as pl

from loop.evaluation import sample_counts
from loop.seeds import derived_seed
from loop.signals.registry import SignalContext, signal


@signal("base_accuracy", scope="base", level="seed")
def base_accuracy(ctx: SignalContext) -> pl.DataFrame:
    """Share of correct samples of the base model on each seed question."""
    n = ctx.cfg.dynamics.n_samples
    counts = sample_counts(ctx.cfg, ctx.bound.sampler, ctx.rows, n, seed=derived_seed("base_accuracy", ctx.seed))
    return counts.select(pl.col("id").alias("seed_id"), base_accuracy=pl.col("n_correct") / pl.col("n_samples"))
