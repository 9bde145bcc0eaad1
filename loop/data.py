"""Load the examples a run uses and check them against the config before any training.

Every source returns the Examples contract of `loop.schema`; the checks here are the ones that need the
config (budgets against the pool, seed links for seed-level strategies), done once, before round 0.
"""

from __future__ import annotations

import polars as pl

from loop.config import RunConfig
from loop.schema import EXAMPLE_SCHEMA, SPLITS


def load_examples(cfg: RunConfig) -> pl.DataFrame:
    d = cfg.data
    if d.source == "embedded":
        from loop.embedded.task import make_task

        return make_task(n_seeds=d.n_seeds, pool_per_seed=d.pool_per_seed, n_dev=d.n_dev, n_test=d.n_test,
                         min_steps=d.min_steps, max_steps=d.max_steps, seed=d.data_seed)
    raise ValueError(f"data.source {d.source!r} is not supported")


def check_examples(cfg: RunConfig, examples: pl.DataFrame, needs: set[str]) -> None:
    """Raise a ValueError naming the field when the data cannot serve this config."""
    missing = [c for c in EXAMPLE_SCHEMA if c not in examples.columns]
    if missing:
        raise ValueError(f"examples lack columns {missing}")
    bad_split = examples.filter(~pl.col("split").is_in(SPLITS))
    if bad_split.height:
        raise ValueError(f"example {bad_split['id'][0]!r}: split {bad_split['split'][0]!r} not in {SPLITS}")
    counts = dict(examples.group_by("split").len().iter_rows())
    for split in ("seed", "pool", "test"):
        if not counts.get(split):
            raise ValueError(f"the data has no '{split}' examples")
    needed = sum(cfg.selection.budgets) + sum(cfg.selection.iid_extra_budgets)
    if needed > counts["pool"]:
        raise ValueError(f"selection.budgets add {needed} pool items but the pool holds {counts['pool']}")
    if "premem" in needs:
        seeds = set(examples.filter(pl.col("split") == "seed")["id"].to_list())
        pool = examples.filter(pl.col("split") == "pool")
        unlinked = pool.filter(pl.col("seed_id").is_null() | ~pl.col("seed_id").is_in(seeds))
        if unlinked.height:
            raise ValueError(f"strategy 'premem' scores seeds, but pool item {unlinked['id'][0]!r} (and "
                             f"{unlinked.height - 1} more) has no seed_id naming a seed")
    if cfg.dynamics.tau_mode == "style_floor":
        if "style_floor" not in examples.columns:
            raise ValueError("dynamics.tau_mode 'style_floor' needs a style_floor column in the examples")


def tau_for(cfg: RunConfig, examples: pl.DataFrame):
    """The memorization threshold: one float, or per example log(floor_scale * style_floor)."""
    dyn = cfg.dynamics
    if dyn.tau_mode == "absolute":
        return dyn.tau
    return examples.select(
        pl.col("id").alias("example_id"), (pl.col("style_floor") * dyn.floor_scale).log().alias("tau")
    )
