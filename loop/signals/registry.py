"""The signal registry: providers register by decorator in this package, third parties by entry point.

A provider has a name, the columns it writes, a scope and a level, and a compute function over a narrow context
(`SignalContext`):
- scope `static`: from the examples' text alone, once per replicate, before any training;
- scope `base`: from the base model, once per replicate, before any training (it never saw the seeds);
- scope `round`: from each round's fine-tuned model and its dynamics ledger, for the round after it;
- scope `checkpoint`: from the model at each epoch checkpoint of a round (`ctx.epoch`); candidates carry each of its
  columns as a list, one value per checkpoint in epoch order (the first one is the model before it memorized much).
- level `item` returns one row per pool item keyed by `id`; level `seed` one row per seed keyed by `seed_id`
  (joined to the pool items linked to that seed).
The engine computes the union of what the chosen strategies need, each provider at its scope, and stores the
result, so a resumed run never recomputes a stored signal. Third-party packages expose a `Signal` under the
entry-point group `curation_loop.signals` (`name = "package.module:attribute"`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from loop.plugins import PluginRegistry

ENTRY_POINT_GROUP = "curation_loop.signals"
SCOPES = ("static", "base", "round", "checkpoint")
LEVELS = ("item", "seed")
KEYS = {"item": "id", "seed": "seed_id"}


@dataclass(frozen=True)
class SignalContext:
    """What a provider may read. `rows`: the pool items (level item) or the seeds (level seed) to score, with their
    text and metadata; `bound`: the scope's model through the run's backend (`.sampler`, `.scorer`), None for
    static; `ledger` and `tau`: the round's dynamics (round scope only); `epoch`: the checkpoint (checkpoint scope
    only); `stored(name)`: a signal of this replicate computed at an earlier scope (listed in the provider's
    `requires`); `cache_dir`: a folder of the run store the provider may keep files in."""

    cfg: Any
    tokenizer: Any
    examples: pl.DataFrame
    rows: pl.DataFrame
    seed: int
    cache_dir: Path
    bound: Any = None
    ledger: pl.DataFrame | None = None
    tau: Any = None
    stored: Callable[[str], pl.DataFrame] | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class Signal:
    name: str
    columns: tuple[str, ...]
    scope: str
    level: str
    compute: Callable[[SignalContext], pl.DataFrame]
    description: str = ""
    requires: tuple[str, ...] = ()  # providers of an earlier scope whose stored frames `compute` reads
    reads_samples: bool = False  # round scope: reads the ledger's sample accuracy (the round must sample)

    @property
    def key(self) -> str:
        return KEYS[self.level]

    def __call__(self, ctx: SignalContext) -> pl.DataFrame:
        """Compute, then check the frame: the key and every declared column, one row per row of `ctx.rows`."""
        frame = self.compute(ctx)
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(f"signal {self.name!r} must return a polars DataFrame, got {type(frame).__name__}")
        missing = [c for c in (self.key, *self.columns) if c not in frame.columns]
        if missing:
            raise ValueError(f"signal {self.name!r} returned no column(s) {missing}")
        keys = ctx.rows["id"]  # the pool items (level item) or the seeds (level seed)
        frame = frame.select(self.key, *self.columns)
        if frame.height != keys.len() or set(frame[self.key].to_list()) != set(keys.to_list()):
            raise ValueError(f"signal {self.name!r} must return one row per {self.level} ({keys.len()}), "
                             f"got {frame.height}")
        for column in self.columns:
            values = frame[column]
            if values.null_count() or (values.dtype.is_float() and not values.is_finite().all()):
                raise ValueError(f"signal {self.name!r}: column {column!r} has missing or non-finite values")
        return frame


def signal(name: str, *, columns: tuple[str, ...] | None = None, scope: str, level: str,
           requires: tuple[str, ...] = (), reads_samples: bool = False) -> Callable:
    """Decorator making a `Signal` from `compute(ctx) -> DataFrame`; its docstring's first line describes it.
    `columns` defaults to (name,)."""
    if scope not in SCOPES:
        raise ValueError(f"signal {name!r}: scope must be one of {SCOPES}, got {scope!r}")
    if level not in LEVELS:
        raise ValueError(f"signal {name!r}: level must be one of {LEVELS}, got {level!r}")
    if reads_samples and scope != "round":
        raise ValueError(f"signal {name!r}: only a round-scope signal reads the ledger's samples")

    def wrap(fn: Callable[[SignalContext], pl.DataFrame]) -> Signal:
        doc = (fn.__doc__ or "").strip().splitlines()
        return Signal(name, tuple(columns or (name,)), scope, level, fn, doc[0] if doc else "", tuple(requires),
                      reads_samples)

    return wrap


def _one_writer(items: dict[str, Signal], item: Signal) -> None:
    for other in items.values():
        shared = set(other.columns) & set(item.columns)
        if other is not item and other.name != item.name and shared:
            raise ValueError(f"signals {other.name!r} and {item.name!r} both write column(s) {sorted(shared)}")


REGISTRY: PluginRegistry[Signal] = PluginRegistry("signal", Signal, __package__, ENTRY_POINT_GROUP, check=_one_writer)


def register(item: Signal) -> Signal:
    return REGISTRY.register(item)


def names() -> list[str]:
    return REGISTRY.names()


def resolve(name: str) -> Signal:
    return REGISTRY.resolve(name)


def columns() -> dict[str, Signal]:
    """Every column any registered provider writes, and its provider."""
    REGISTRY.load()
    return {c: s for s in REGISTRY.items.values() for c in s.columns}


def providers_for(wanted: set[str]) -> list[Signal]:
    """The providers writing the columns `wanted`, with those they require, each once, requirements first.

    A column no provider writes is an error naming the known ones."""
    known = columns()
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"no signal provider writes column(s) {unknown}; known columns: {sorted(known)} "
                         "(curation-loop signals lists them)")
    out: list[Signal] = []

    def add(item: Signal, chain: tuple[str, ...] = ()) -> None:
        if item in out:
            return
        if item.name in chain:
            raise ValueError(f"signal requirements form a cycle: {' -> '.join((*chain, item.name))}")
        for name in item.requires:
            add(resolve(name), (*chain, item.name))
        out.append(item)

    for column in sorted(wanted):
        add(known[column])
    return out
