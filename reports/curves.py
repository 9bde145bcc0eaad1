"""Learning curves from the evaluations table: validation, round-0 folding, per-n means with 95% intervals.

Round 0 (the model trained on the seed set alone) is trained once per paired seed and stored
under strategy "shared"; it is the first point of every strategy's curve, so it is copied into
each strategy here, once, and every other function in reports/ works on the folded frame.
"""

from __future__ import annotations

import polars as pl

from loop.schema import EVAL_SCHEMA, SHARED_STRATEGY
from reports.stats import mean_interval

CURVE_POINT_SCHEMA: dict[str, pl.DataType] = {
    "strategy": pl.String,
    "n_examples": pl.Int64,
    "accuracy_mean": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_seeds": pl.Int64,
}


def check_columns(frame: pl.DataFrame, schema: dict[str, pl.DataType], table: str) -> pl.DataFrame:
    """Return `frame` restricted to `schema`'s columns cast to its dtypes; raise naming the table and field."""
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} frame lacks column(s) {missing}; it has {frame.columns}")
    try:
        out = frame.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
    except pl.exceptions.PolarsError as err:
        raise ValueError(f"{table} frame: a column does not cast to its schema {schema}: {err}") from err
    for col in schema:
        nulls = out[col].null_count()
        if nulls:
            row = out.with_row_index().filter(pl.col(col).is_null())["index"][0]
            raise ValueError(f"{table} frame: field {col!r} is null in {nulls} row(s), first at row {row}")
    return out


def fold_shared(evals: pl.DataFrame) -> pl.DataFrame:
    """Validate an evaluations frame (EVAL_SCHEMA) and copy round-0 "shared" rows into every strategy.

    Reads strategy, seed, round, n_examples, accuracy. Returns columns strategy, seed, n_examples,
    accuracy, one row per (strategy, seed, n_examples), sorted. A shared row for seed s is copied
    into strategy S only when S has rows for seed s (paired seeds) and no round-0 row of its own.
    With no strategy besides "shared", the shared rows are kept under "shared".
    Two rows for one (strategy, seed, round) are an error; two rounds with the same n_examples
    (a round that added nothing, e.g. an exhausted pool) are averaged into one point, since a
    curve has one value per n.
    """
    ev = check_columns(evals, EVAL_SCHEMA, "evaluations")
    if ev.height == 0:
        raise ValueError("evaluations frame is empty: nothing to report")
    bad = ev.filter((pl.col("n_examples") <= 0) | ~pl.col("accuracy").is_between(0.0, 1.0))
    if bad.height:
        raise ValueError(
            "evaluations frame: n_examples must be > 0 (curves are on log n) and accuracy in [0, 1]; "
            f"first bad row: {bad.row(0, named=True)}"
        )
    dup = ev.group_by("strategy", "seed", "round").len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"evaluations frame: duplicate (strategy, seed, round) rows: {dup.rows()[:5]}")

    shared = ev.filter(pl.col("strategy") == SHARED_STRATEGY)
    own = ev.filter(pl.col("strategy") != SHARED_STRATEGY)
    if own.height == 0:
        folded = shared
    else:
        has_round0 = own.filter(pl.col("round") == 0).select("strategy", "seed").unique()
        targets = own.select("strategy", "seed").unique().join(has_round0, on=["strategy", "seed"], how="anti")
        copies = targets.join(shared.drop("strategy"), on="seed", how="inner").select(ev.columns)
        folded = pl.concat([own, copies])
    return (
        folded.group_by("strategy", "seed", "n_examples")
        .agg(pl.col("accuracy").mean())
        .sort("strategy", "seed", "n_examples")
    )


def curve_points(evals: pl.DataFrame) -> pl.DataFrame:
    """Per strategy and n_examples: mean accuracy over seeds and its 95% t-interval.

    Reads an evaluations frame (EVAL_SCHEMA; round 0 under "shared" is folded into every strategy).
    Writes strategy, n_examples, accuracy_mean, ci_low, ci_high, n_seeds; with one seed the
    interval is the point itself.
    """
    folded = fold_shared(evals)
    rows = []
    for (strategy, n), group in folded.group_by("strategy", "n_examples"):
        iv = mean_interval(group["accuracy"].to_numpy())
        rows.append((strategy, n, iv.mean, iv.low, iv.high, group.height))
    return pl.DataFrame(rows, schema=CURVE_POINT_SCHEMA, orient="row").sort("strategy", "n_examples")
