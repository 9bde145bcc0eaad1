"""One plug-in registry shape for strategies and signal providers: items found in a package's modules and under an
entry-point group, registered once by name, resolved with a hint for near misses.

Discovery is lazy (on the first lookup), so importing a registry imports none of the modules it will scan.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class PluginRegistry(Generic[T]):
    """Items of class `kind` (named by `.name`): those defined in the modules of `package` (but `skip`), then those
    installed under the entry-point group `group`. `check(item)` may refuse an item (raise) as it registers."""

    def __init__(self, what: str, kind: type, package: str, group: str, *, skip: tuple[str, ...] = ("registry",),
                 check: Callable[[dict[str, T], T], None] | None = None):
        self.what, self.kind, self.package, self.group, self.skip, self.check = what, kind, package, group, skip, check
        self.items: dict[str, T] = {}
        self.loaded = False

    def register(self, item: T) -> T:
        if not isinstance(item, self.kind):
            raise TypeError(f"only {self.kind.__name__} objects can be registered, got {type(item).__name__}")
        if item.name in self.items and self.items[item.name] is not item:
            raise ValueError(f"{self.what} {item.name!r} is registered twice")
        if self.check is not None:
            self.check(self.items, item)
        self.items[item.name] = item
        return item

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_") or info.name in self.skip:
                continue
            module = importlib.import_module(f"{self.package}.{info.name}")
            for value in vars(module).values():
                if isinstance(value, self.kind) and value.__class__ is self.kind:
                    self.register(value)
        for ep in entry_points(group=self.group):
            item = ep.load()
            if not isinstance(item, self.kind) or item.name != ep.name:
                raise TypeError(f"entry point {ep.name!r} ({ep.value}) must be a {self.kind.__name__} named {ep.name!r}")
            self.register(item)

    def reset(self) -> None:
        """Forget every item: the next lookup discovers them again (for tests that install a plug-in)."""
        self.items, self.loaded = {}, False

    def names(self) -> list[str]:
        self.load()
        return sorted(self.items)

    def resolve(self, name: str) -> T:
        self.load()
        if name not in self.items:
            close = difflib.get_close_matches(name, list(self.items), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise KeyError(f"unknown {self.what} {name!r}; registered: {sorted(self.items)}.{hint}")
        return self.items[name]
