"""`difficulty`: the hardest seeds first, the control the reviewers asked premem be compared with.

`source: base` (default): seeds the base model solves least often (`base_accuracy`, its sample accuracy per seed);
`source: level`: the dataset's own difficulty level (MATH's 1-5), highest first. Pool items take their seed's score;
ties (the same accuracy or level) fall to the selector's seeded uniform draw.
"""

import polars as pl

from strategies.registry import strategy


def _needs(params: dict) -> tuple[str, ...]:
    return () if params.get("source", "base") == "level" else ("base_accuracy",)


@strategy("difficulty", needs=_needs)
def difficulty(candidates: pl.DataFrame, *, seed: int, source: str = "base") -> pl.Series:
    """Hardest seeds first: lowest base-model accuracy (source: base) or highest dataset level (source: level)."""
    if source == "base":
        return (-candidates["base_accuracy"]).cast(pl.Float64).alias("score")
    if source != "level":
        raise ValueError(f"difficulty: source must be 'base' or 'level', got {source!r}")
    if "level" not in candidates.columns or candidates["level"].null_count() == candidates.height:
        raise ValueError("difficulty with source 'level' needs a level column in the data (MATH has one)")
    level = candidates["level"].cast(pl.Utf8).str.extract(r"(\d+)").cast(pl.Float64)
    return level.fill_null(level.min() if level.null_count() < level.len() else 0.0).alias("score")
