"""`random`: the i.i.d. scaling baseline every other strategy is measured against."""

import numpy as np
import polars as pl

from strategies.registry import strategy


@strategy("random")
def random(candidates: pl.DataFrame, *, seed: int) -> pl.Series:
    """Uniform draws from the unused pool (i.i.d. data scaling)."""
    return pl.Series("score", np.random.default_rng(seed).random(candidates.height))
