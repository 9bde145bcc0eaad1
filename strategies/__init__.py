"""Selection strategies: pure functions over candidate frames, found through `strategies.registry`."""

from strategies.registry import Strategy, names, resolve, strategy

__all__ = ["Strategy", "names", "resolve", "strategy"]
