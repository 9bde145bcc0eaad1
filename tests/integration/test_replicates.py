"""Paired replicates vary the data: each draws its own seed set, pool and test set from its seed, shared by all its
strategies; `data.per_replicate: false` holds one draw for every replicate."""

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine
from loop.run.plan import Step

pytestmark = pytest.mark.integration


def engine(tmp_path, *extra) -> Engine:
    e = Engine(build_config("smoke", overrides=["seeds=[0, 1, 2]", f"out_dir={tmp_path}", *extra]))
    e.prepare()
    return e.context


def questions(e: Engine, seed: int, split: str) -> set[str]:
    return set(e.examples(seed).filter(pl.col("split") == split)["question"])


def test_each_replicate_draws_its_own_data(tmp_path):
    e = engine(tmp_path)
    for split in ("seed", "pool", "test"):
        drawn = [questions(e, s, split) for s in (0, 1, 2)]
        assert drawn[0] != drawn[1] and drawn[1] != drawn[2] and drawn[0] != drawn[2], split
    # A replicate's steps select from its own pool, whatever the strategy.
    pool_1 = set(e.examples(1).filter(pl.col("split") == "pool")["id"])
    for strategy in ("random", "perplexity"):
        assert set(e.candidates(Step(1, strategy, 1), [])["id"]) == pool_1
    # Drawn once and stored: a second engine on the same folder reads the same draws back.
    again = Engine(e.cfg).context
    assert again.examples(2).equals(e.examples(2))
    assert (tmp_path / "signals" / "seed-2" / "base_perplexity.parquet").is_file()


def test_the_data_can_be_held_fixed_across_replicates(tmp_path):
    e = engine(tmp_path, "data.per_replicate=false")
    assert e.examples(0).equals(e.examples(1)) and e.examples(1).equals(e.examples(2))
