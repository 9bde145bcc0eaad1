"""Selectors: highest score first, seeded and order-independent tie-breaks, threshold-then-uniform."""

import polars as pl
import pytest

from loop.selection import select_proportional, select_top_k, stable_uniform


def frame(n):
    return pl.DataFrame({"id": [f"p{i:03d}" for i in range(n)]})


def test_top_k_takes_the_highest_scores():
    c = frame(5)
    assert select_top_k(c, pl.Series([0.1, 0.9, 0.5, 0.7, 0.2]), 2, salt="s") == ["p001", "p003"]


def test_tie_break_is_seeded_and_independent_of_row_order():
    c = frame(50)
    scores = pl.Series([1.0] * 50)
    a = select_top_k(c, scores, 10, salt="0:1")
    shuffled = c.sample(fraction=1.0, shuffle=True, seed=3)
    assert select_top_k(shuffled, pl.Series([1.0] * 50), 10, salt="0:1") == a
    assert select_top_k(c, scores, 10, salt="1:1") != a


def test_indicator_scores_draw_uniformly_among_eligible_then_fill():
    c = frame(20)
    eligible = pl.Series([1.0 if i % 4 == 0 else 0.0 for i in range(20)])  # 5 eligible
    picked = select_top_k(c, eligible, 3, salt="x")
    assert all(int(p[1:]) % 4 == 0 for p in picked)
    filled = select_top_k(c, eligible, 8, salt="x")
    assert sum(int(p[1:]) % 4 == 0 for p in filled) == 5  # every eligible item, then 3 others
    counts = {f"p{i:03d}": 0 for i in range(0, 20, 4)}
    for s in range(2000):
        for p in select_top_k(c, eligible, 1, salt=str(s)):
            counts[p] += 1
    assert min(counts.values()) > 300 and max(counts.values()) < 500  # about 400 each: uniform


def test_bad_inputs_are_rejected():
    c = frame(3)
    with pytest.raises(ValueError, match="budget 4"):
        select_top_k(c, pl.Series([1.0, 2.0, 3.0]), 4, salt="s")
    with pytest.raises(ValueError, match="nulls"):
        select_top_k(c, pl.Series([1.0, None, 3.0]), 1, salt="s")
    with pytest.raises(ValueError, match="finite"):
        select_top_k(c, pl.Series([1.0, float("inf"), 3.0]), 1, salt="s")
    with pytest.raises(ValueError, match="non-negative"):
        select_proportional(c, pl.Series([1.0, -1.0, 3.0]), 1, salt="s")


def test_proportional_never_picks_zero_weight_while_others_remain():
    c = frame(10)
    w = pl.Series([0.0] * 5 + [1.0, 2.0, 3.0, 4.0, 5.0])
    for s in range(50):
        assert all(int(p[1:]) >= 5 for p in select_proportional(c, w, 5, salt=str(s)))


def test_stable_uniform_is_in_unit_interval():
    u = stable_uniform([f"i{k}" for k in range(1000)], "salt")
    assert 0 < u.min() and u.max() < 1 and 0.45 < u.mean() < 0.55
