"""The work-unit plan (loop.units) on hand-made cases: which items a unit holds, its seed, and how units are
dealt into shards."""

import pytest

from loop.units import cut, shard_ranges, unit_seed, unit_slices
from loop.seeds import derived_seed


def test_units_cut_a_call_in_list_order():
    assert unit_slices(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert unit_slices(3, 3) == [slice(0, 3)]
    assert unit_slices(2, 512) == [slice(0, 2)]
    assert unit_slices(0, 3) == []
    with pytest.raises(ValueError, match="at least one item"):
        unit_slices(4, 0)


def test_unit_zero_keeps_the_call_seed_and_the_others_differ():
    assert unit_seed(1234, 0) == 1234  # a call of at most one unit samples as an uncut call
    seeds = [unit_seed(1234, u) for u in range(1, 6)]
    assert seeds == [derived_seed("unit", 1234, u) for u in range(1, 6)]
    assert len(set(seeds + [1234])) == 6
    assert unit_seed(1235, 1) != unit_seed(1234, 1)


def test_shards_are_runs_of_consecutive_units_that_cover_them_once():
    assert shard_ranges(5, 2) == [range(0, 2), range(2, 5)]
    assert shard_ranges(6, 3) == [range(0, 2), range(2, 4), range(4, 6)]
    assert shard_ranges(2, 4) == [range(0, 1), range(1, 2)]  # never an empty shard
    assert shard_ranges(0, 3) == []
    for n_units in range(0, 12):
        for shards in range(1, 6):
            ranges = shard_ranges(n_units, shards)
            assert [u for r in ranges for u in r] == list(range(n_units))
            assert all(len(r) > 0 for r in ranges)
            assert max(map(len, ranges), default=0) - min(map(len, ranges), default=0) <= 1
    with pytest.raises(ValueError, match="positive"):
        shard_ranges(3, 0)


def test_a_call_is_cut_into_its_units_with_their_seeds():
    assert cut(list("abcde"), 2, seed=9) == [(["a", "b"], 9), (["c", "d"], unit_seed(9, 1)), (["e"], unit_seed(9, 2))]
    assert cut([], 2, seed=9) == []
