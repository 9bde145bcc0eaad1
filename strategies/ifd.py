"""`ifd`: the paper's IFD baseline (Kang et al. 2024, section 5.3; Li et al. 2023).

Seeds whose Instruction-Following Difficulty (NLL(answer | question) / NLL(answer) under the base model, which never
trained on them) is at or above the `percentile`-th percentile of the seeds' are eligible (paper: 50 for GSM8K, 25
for MATH); the batch is drawn uniformly among their unused pool items (an indicator score, as in `premem`).
"""

import numpy as np
import polars as pl

from strategies.registry import strategy


def seed_cut(candidates: pl.DataFrame, column: str, percentile: float) -> float:
    """The `percentile`-th percentile of `column` over the distinct seeds of the candidates (not over their items:
    a seed with many unused items would weigh more)."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    per_seed = candidates.group_by("seed_id").agg(pl.col(column).first())[column].to_numpy()
    return float(np.percentile(per_seed, percentile))


@strategy("ifd", needs=("ifd",))
def ifd(candidates: pl.DataFrame, *, seed: int, percentile: float = 50.0) -> pl.Series:
    """Uniform draws among pool items whose seed's IFD is at or above the given percentile (paper: 50)."""
    return (candidates["ifd"] >= seed_cut(candidates, "ifd", percentile)).cast(pl.Float64).alias("score")
