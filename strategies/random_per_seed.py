"""`random_per_seed`: the authors' own i.i.d. scaling, equal copies per seed (Kang et al. 2024, section 5.3).

Their IID baseline adds the first k synthetic copies of every seed; here each round takes the same number of
unused pool items from every seed (uniform within a seed), as far as the budget allows, the seeds that get one
more when the budget does not divide evenly drawn at random. Each seed's unused items are ranked in a seeded
random order; the score is minus that rank, so the top-k selector takes every seed's first item, then every
seed's second, and so on. Unlike `random`, which draws items regardless of their seed, the seeds stay balanced.
"""

import numpy as np
import polars as pl

from strategies.registry import strategy


@strategy("random_per_seed")
def random_per_seed(candidates: pl.DataFrame, *, seed: int) -> pl.Series:
    """Equal copies per seed: each round takes the same number of unused pool items from every seed."""
    draw = pl.Series(np.random.default_rng(seed).random(candidates.height))
    # Items naming no seed form one group of their own.
    ranks = (candidates.select(seed_id=pl.col("seed_id").fill_null(""), draw=draw)
             .select(pl.col("draw").rank("ordinal").over("seed_id")))
    return (-ranks.to_series().cast(pl.Float64)).alias("score")
