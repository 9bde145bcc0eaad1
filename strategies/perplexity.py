"""`perplexity`: pool items the base model finds least familiar (reference-model perplexity filtering)."""

import polars as pl

from strategies.registry import strategy


@strategy("perplexity", needs=("base_perplexity",))
def perplexity(candidates: pl.DataFrame, *, seed: int) -> pl.Series:
    """Highest perplexity of the whole example (prompt + target) under the base model first."""
    return candidates["base_perplexity"].alias("score")
