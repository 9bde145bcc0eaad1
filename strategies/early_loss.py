"""`early_loss`: pool items the round's model fitted worst at its first epoch checkpoint, before it memorized much
(`loss` reads the last checkpoint, where most NLLs are near 0). `checkpoint` picks another one (0 = first, -1 = last).
"""

import polars as pl

from strategies.registry import strategy


@strategy("early_loss", needs=("loss_by_epoch",))
def early_loss(candidates: pl.DataFrame, *, seed: int, checkpoint: int = 0) -> pl.Series:
    """Highest target NLL at the round's first epoch checkpoint first."""
    return candidates["loss_by_epoch"].list.get(checkpoint).cast(pl.Float64).alias("score")
