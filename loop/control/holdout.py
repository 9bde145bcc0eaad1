"""The pool items the `auto` controller keeps back from its own selections to score its probes on, beside the dev
split (`lookahead_holdout`).

Why. On `default-gpu` (16 replicates, one H100, 2026-12-07) an arm's probe gain over random varied across replicates
by 0.0065-0.0074 nats (SD), against its mean standard error over the 32 dev items of 0.0049-0.0058: the dev items
drawn made about half to four fifths of a probe's variance, while the arms' gaps were smaller than either (loss
+0.0062 against +0.0028 for premem and perplexity). More evaluation items cut that part, and the pool has them: its
items carry reference solutions like dev's. Scoring n more items divides the item part of a probe's variance by
(n_dev + n) / n_dev.

Measured with 128 kept back (16 replicates each, one H100, 2026-12-07; bench/RESULTS.md): the items' standard error
fell from 0.005 to 0.002 nats on `default-gpu` and from 0.011 to 0.005 on SmolLM2-135M, and the probes' choice went to
loss, the arm that wins there, in 22 of 32 decisions against 17 of 32 without (`default-gpu`), and in all 32 on
SmolLM2, where `auto` then matched loss (1.32x against 1.31x of i.i.d., paired 1.00x [0.94, 1.06]). Scoring them added
no time the probes' seconds show (1,426 s against 1,441 s without, `default-gpu`). So the default keeps back min(128,
a quarter of the pool) (`default_size`): 128 on the presets' pools of 512, a quarter on smaller pools, so that the
chain keeps three quarters to select from, and never so many that the rounds' budgets outgrow what is left.

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


DEFAULT_ITEMS = 128  # what was measured (module docstring)


def default_size(examples: pl.DataFrame, budgets: list[int]) -> int:
    """The items kept back where `lookahead_holdout` is null: min(128, a quarter of the pool, what the pool holds
    beyond the rounds' budgets), so that a small pool still fills every round of the chain."""
    pool = examples.filter(pl.col("split") == "pool").height
    return max(0, min(DEFAULT_ITEMS, pool // 4, pool - sum(budgets)))


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
