"""The work-unit plan (no torch): how one sampling or scoring call is cut into units, each unit's sampling seed, and
how units are dealt into shards. `loop.model.shards` says why the results then do not depend on the shards."""

from __future__ import annotations

from loop.seeds import derived_seed


def unit_slices(n_items: int, unit: int) -> list[slice]:
    """The units of a call over `n_items` items: [0, U), [U, 2U), ... (none for no items)."""
    if unit <= 0:
        raise ValueError(f"a work unit holds at least one item, got {unit}")
    return [slice(start, min(start + unit, n_items)) for start in range(0, n_items, unit)]


def unit_seed(seed: int, index: int) -> int:
    """The sampling seed of unit `index` of a call under `seed`: the call's own for unit 0, derived for the others."""
    return int(seed) if index == 0 else derived_seed("unit", seed, index)


def cut(items: list, unit: int, seed: int = 0) -> list[tuple[list, int]]:
    """A call's items cut into its units, each with its sampling seed: [(items of unit u, unit_seed(seed, u))]."""
    return [(items[part], unit_seed(seed, index)) for index, part in enumerate(unit_slices(len(items), unit))]


def shard_ranges(n_units: int, shards: int) -> list[range]:
    """`n_units` units dealt into at most `shards` runs of consecutive units, as even as can be (none empty)."""
    if shards <= 0:
        raise ValueError(f"shards must be positive, got {shards}")
    count = min(shards, n_units)
    bounds = [round(i * n_units / count) for i in range(count + 1)] if count else [0]
    return [range(bounds[i], bounds[i + 1]) for i in range(count)]
