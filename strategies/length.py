"""`length`: the paper's "heuristic" baseline (Kang et al. 2024, section 5.3).

Seeds with the most reasoning lines (lines of the reference solution) first: the top `share` of seeds (paper: 0.5
for GSM8K, 0.75 for MATH) are eligible and the batch is drawn uniformly among their unused pool items.
"""

import polars as pl

from strategies.ifd import seed_cut
from strategies.registry import strategy


@strategy("length", needs=("reasoning_lines",))
def length(candidates: pl.DataFrame, *, seed: int, share: float = 0.5) -> pl.Series:
    """Uniform draws among pool items of the seeds with the most reasoning lines (top share, paper: 0.5)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    cut = seed_cut(candidates, "reasoning_lines", 100 * (1 - share))
    return (candidates["reasoning_lines"] >= cut).cast(pl.Float64).alias("score")
