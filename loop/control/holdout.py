"""The pool items the `auto` controller keeps back from its own selections to score its probes on, beside the dev
split (`lookahead_holdout`).

Why. On `default-gpu` (16 replicates, one H100, 2026-12-07) an arm's probe gain over random varied across replicates
by 0.0065-0.0074 nats (SD), against its mean standard error over the 32 dev items of 0.0049-0.0058: the dev items
drawn make about half to four fifths of a probe's variance, while the arms' gaps are smaller than either (loss
+0.0062 against +0.0028 for premem and perplexity). More evaluation items cut that part, and the pool has them: its
items carry reference solutions like dev's. Scoring n more items divides the item part of a probe's variance by
(n_dev + n) / n_dev. What that buys is to be measured (`bench/gpu_runs.sh default-gpu-auto-holdout`), so the
default keeps none back.

How. The items are drawn once per replicate, uniformly from its pool with a seed of the replicate's own, so they are
the same in every round and unbiased for the pool (the items no arm selected would not be: every arm leaves behind
what its signal ranks low). They are withheld from every round of the chain, so the chain selects from a pool
smaller by n; the fixed strategies beside it keep the whole pool. No test row is read: the items are pool rows, and
a probe only scores them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from loop.seeds import derived_seed


def holdout_ids(examples: pl.DataFrame, replicate: int, n: int) -> list[str]:
    """The `n` pool items of `examples` kept back for the probes of replicate `replicate`, as sorted ids; refused
    where they would leave the chain no pool to select from."""
    if n <= 0:
        return []
    pool = sorted(examples.filter(pl.col("split") == "pool")["id"].to_list())
    if n >= len(pool):
        raise ValueError(f"strategy auto: lookahead_holdout {n} leaves nothing to select from a pool of {len(pool)} "
                         "items; keep it well below the pool's size")
    picked = np.random.default_rng(derived_seed("auto-holdout", replicate)).choice(len(pool), size=n, replace=False)
    return sorted(pool[i] for i in picked)


def withheld(candidates: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    """`candidates` without the kept-back items."""
    return candidates.filter(~pl.col("id").is_in(ids)) if ids else candidates


def evaluation_rows(dev: pl.DataFrame, examples: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    """What the probes score: the dev split, then the kept-back pool items, each part in id order."""
    if not ids:
        return dev
    kept = examples.filter(pl.col("id").is_in(ids)).sort("id").select(dev.columns)
    return pl.concat([dev, kept], how="vertical_relaxed")
