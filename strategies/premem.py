"""`premem`: the paper's Algorithm 1 (Kang et al. 2024, arXiv 2411.07681).

Seeds whose pre-memorization accuracy is at most `threshold` (default 0.75, as in the authors' code) are
eligible; the batch is drawn uniformly without replacement from unused pool items linked to them. The
score is the eligibility indicator, so the top-k selector with its seeded tie-break performs that uniform
draw; if fewer eligible items remain than the budget, the rest is filled uniformly from the other items.
"""

import polars as pl

from strategies.registry import strategy


@strategy("premem", needs=("premem",))
def premem(candidates: pl.DataFrame, *, seed: int, threshold: float = 0.75) -> pl.Series:
    """Uniform draws among pool items whose seed has pre-memorization accuracy <= threshold (paper: 0.75)."""
    return (candidates["premem"] <= threshold).cast(pl.Float64).alias("score")
