"""`loss`: pool items the current round's model fits worst."""

import polars as pl

from strategies.registry import strategy


@strategy("loss", needs=("loss",))
def loss(candidates: pl.DataFrame, *, seed: int) -> pl.Series:
    """Highest target NLL under the current round's fine-tuned model first."""
    return candidates["loss"].alias("score")
