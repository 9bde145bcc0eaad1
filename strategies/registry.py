"""The strategy registry: in-tree strategies register by decorator, third parties by entry point.

A strategy is a pure function `fn(candidates: pl.DataFrame, *, seed: int, **params) -> pl.Series` returning
one finite score per candidate row, higher = picked first, deterministic for a given seed. Candidates carry the
pool item's text and metadata (id, seed_id, question, solution, answer, and level, subject, steps where the data
has them) and the signal columns the strategy declares it reads (`needs`, a tuple or a function of the params),
so the engine computes only those. A function that takes `context` also receives a `StrategyContext` (the round,
its budget, what was selected before). Signal columns are written by the providers of `loop.signals` (checked
when a run is prepared; `curation-loop signals` lists them). Third-party packages expose a `Strategy` object under
the entry-point group `curation_loop.strategies` (`name = "package.module:attribute"`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from loop.plugins import PluginRegistry

ENTRY_POINT_GROUP = "curation_loop.strategies"



@dataclass(frozen=True)
class StrategyContext:
    """Where the selection stands: the round (1 = the first selection), the items it adds, the pool items selected
    in earlier rounds (ids), and the size of the seed set."""

    round: int
    budget: int
    selected_before: tuple[str, ...] = ()
    n_seeds: int = 0


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: Callable[..., pl.Series]
    needs: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = ()
    selector: str = "top_k"
    description: str = field(default="")

    def needs_for(self, params: dict | None = None) -> tuple[str, ...]:
        """The signal columns this strategy reads with these params."""
        return tuple(self.needs(dict(params or {})) if callable(self.needs) else self.needs)

    @property
    def takes_context(self) -> bool:
        parameters = inspect.signature(self.fn).parameters
        return "context" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())

    def __call__(self, candidates: pl.DataFrame, *, seed: int, context: StrategyContext | None = None,
                 **params) -> pl.Series:
        if self.takes_context:
            params["context"] = context
        scores = self.fn(candidates, seed=seed, **params)
        if not isinstance(scores, pl.Series) or scores.len() != candidates.height:
            raise TypeError(f"strategy {self.name!r} must return a polars Series with one score per candidate")
        return scores


def strategy(name: str, *, needs: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = (),
             selector: str = "top_k") -> Callable:
    """Decorator making a `Strategy` from a scoring function; its docstring's first line describes it. `selector` names
    a registered selector (`loop.selection.SELECTORS`: top_k, proportional), checked when a run is prepared."""

    def wrap(fn: Callable[..., pl.Series]) -> Strategy:
        doc = (fn.__doc__ or "").strip().splitlines()
        return Strategy(name, fn, needs if callable(needs) else tuple(needs), selector, doc[0] if doc else "")

    return wrap


REGISTRY: PluginRegistry[Strategy] = PluginRegistry("strategy", Strategy, __package__, ENTRY_POINT_GROUP,
                                                  skip=("registry",))


def register(item: Strategy) -> Strategy:
    return REGISTRY.register(item)


def names() -> list[str]:
    return REGISTRY.names()


def resolve(name: str | Strategy) -> Strategy:
    """The strategy registered under `name` (a Strategy is returned as is)."""
    return name if isinstance(name, Strategy) else REGISTRY.resolve(name)
