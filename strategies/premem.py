"""`premem`: the paper's Algorithm 1 (Kang et al. 2024, arXiv 2411.07681).

Seeds whose pre-memorization accuracy is at most `threshold` (default 0.75, as in the authors' code) are
eligible; the batch is drawn uniformly without replacement from unused pool items linked to them. The
score is the eligibility indicator, so the top-k selector with its seeded tie-break performs that uniform
draw; if fewer eligible items remain than the budget, the rest is filled uniformly from the other items.

`include_base: true` reads `premem_base` instead: the base model counts as an unmemorized checkpoint 0, so a seed the
model memorized at once but the base already solved is not mistaken for one never solved (the paper's definition
scores both 0 and spends budget on the first).
"""

import polars as pl

from strategies.registry import strategy


def _column(params: dict) -> tuple[str, ...]:
    return ("premem_base",) if params.get("include_base") else ("premem",)


@strategy("premem", needs=_column)
def premem(candidates: pl.DataFrame, *, seed: int, threshold: float = 0.75, include_base: bool = False) -> pl.Series:
    """Uniform draws among pool items whose seed has pre-memorization accuracy <= threshold (paper: 0.75)."""
    column = _column({"include_base": include_base})[0]
    return (candidates[column] <= threshold).cast(pl.Float64).alias("score")
