"""The pool items the auto controller keeps back for its probes (`loop.control.holdout`), on hand-made frames."""

import polars as pl
import pytest

from loop.control.controller import AutoParams
from loop.control.holdout import default_size, evaluation_rows, holdout_ids, withheld


def examples(n_pool=20):
    rows = [{"id": f"d{i}", "split": "dev", "question": f"q d{i}"} for i in (1, 0)]
    rows += [{"id": f"p{i:02d}", "split": "pool", "question": f"q p{i}"} for i in range(n_pool)]
    rows += [{"id": f"t{i}", "split": "test", "question": f"q t{i}"} for i in range(5)]
    rows += [{"id": f"s{i}", "split": "seed", "question": f"q s{i}"} for i in range(3)]
    return pl.DataFrame(rows)


def test_the_kept_back_items_are_pool_items_drawn_once_per_replicate():
    frame = examples()
    kept = holdout_ids(frame, 3, 6)
    assert len(kept) == 6 == len(set(kept)) and kept == sorted(kept) and all(i.startswith("p") for i in kept)
    assert holdout_ids(frame.reverse(), 3, 6) == kept  # the rows' order does not matter
    assert holdout_ids(frame, 4, 6) != kept  # each replicate its own draw
    assert holdout_ids(frame, 3, 0) == []


def test_a_holdout_that_leaves_no_pool_is_refused_by_name():
    with pytest.raises(ValueError, match="lookahead_holdout 20 .* pool of 20"):
        holdout_ids(examples(20), 0, 20)
    with pytest.raises(ValueError, match="lookahead_holdout"):
        AutoParams.parse({"lookahead_holdout": -1})
    assert AutoParams.parse({}).lookahead_holdout is None  # the default size (below)
    assert AutoParams.parse({"lookahead_holdout": 0}).lookahead_holdout == 0  # none kept back


def test_the_default_keeps_back_128_or_a_quarter_of_a_smaller_pool_and_leaves_the_budgets():
    assert default_size(examples(2000), [64, 64]) == 128
    assert default_size(examples(512), [64, 64]) == 128  # the presets' pools
    assert default_size(examples(128), [12, 12]) == 32  # the CPU default's
    assert default_size(examples(20), [4]) == 5
    assert default_size(examples(12), [6, 4]) == 2  # a quarter (3) would leave the two rounds 9 of their 10
    assert default_size(examples(12), [8, 8]) == 0  # the budgets outgrow the pool: none
    assert default_size(examples(3), [1]) == 0  # too small a pool: none


def test_the_chain_never_sees_them_and_the_probes_score_them_after_dev():
    frame = examples()
    kept = holdout_ids(frame, 1, 4)
    pool = frame.filter(pl.col("split") == "pool").drop("split")
    assert set(withheld(pool, kept)["id"]) == set(pool["id"]) - set(kept)
    assert withheld(pool, []).equals(pool)
    dev = frame.filter(pl.col("split") == "dev").sort("id")
    scored = evaluation_rows(dev, frame, kept)
    assert scored["id"].to_list() == ["d0", "d1", *kept] and set(scored["split"]) == {"dev", "pool"}
    assert evaluation_rows(dev, frame, []).equals(dev)
