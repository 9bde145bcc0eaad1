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

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import polars as pl

ENTRY_POINT_GROUP = "curation_loop.strategies"
SELECTORS = ("top_k", "proportional")



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
    """Decorator making a `Strategy` from a scoring function; its docstring's first line describes it."""
    if selector not in SELECTORS:
        raise ValueError(f"strategy {name!r}: selector must be one of {SELECTORS}")

    def wrap(fn: Callable[..., pl.Series]) -> Strategy:
        doc = (fn.__doc__ or "").strip().splitlines()
        return Strategy(name, fn, needs if callable(needs) else tuple(needs), selector, doc[0] if doc else "")

    return wrap


_REGISTRY: dict[str, Strategy] = {}
_loaded = False


def register(item: Strategy) -> Strategy:
    if not isinstance(item, Strategy):
        raise TypeError(f"only Strategy objects can be registered, got {type(item).__name__}")
    if item.name in _REGISTRY and _REGISTRY[item.name] is not item:
        raise ValueError(f"strategy {item.name!r} is registered twice")
    _REGISTRY[item.name] = item
    return item


def _load() -> None:
    """Register every Strategy defined in this package's modules, then those of installed plug-ins."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name == "registry":
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Strategy) and value.__class__ is Strategy:
                register(value)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        item = ep.load()
        if not isinstance(item, Strategy) or item.name != ep.name:
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) must be a Strategy named {ep.name!r}")
        register(item)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def resolve(name: str | Strategy) -> Strategy:
    """The strategy registered under `name` (a Strategy is returned as is)."""
    if isinstance(name, Strategy):
        return name
    _load()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown strategy {name!r}; registered: {sorted(_REGISTRY)}.{hint}")
    return _REGISTRY[name]
