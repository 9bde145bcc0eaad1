"""One plug-in registry shape for every extension point: strategies, signal providers, selectors, backends,
samplers, generators and the auto controller's stopping rules.

A `PluginRegistry` holds items by name. They come from four places, all resolved the same way:
- a decorator on an in-tree function or class (`@REGISTRY.plugin("name")`);
- a typed object found in the modules of a package (`kind` and `package`: a `Strategy` in strategies/, a `Signal`
  in loop/signals/), so that adding one is adding a file;
- a lazy `"module:attr"` target (`REGISTRY.lazy("vllm", "loop.model.vllm.backend:VLLMBackend")`), imported only
  when chosen, so that importing the loop never imports an optional dependency;
- an entry point of the registry's group (`curation_loop.<group>`), for third-party packages.
A name registered twice is an error, and a miss lists the known names and the near ones. Discovery is lazy (on the
first lookup). This module imports nothing but the standard library: strategies/, which may not import the loop,
imports it (the one exception the layering test allows).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PluginRegistry(Generic[T]):
    """Items named `what` (strategy, signal, selector, ...). With `kind`, an item must be an instance of it and name
    itself (`.name`); with `package`, the `kind` objects defined in its modules (but `skip`) register themselves on
    the first lookup; `group` is the entry-point group third parties register under. `check(items, item)` may
    refuse an item (raise) as it registers."""

    def __init__(self, what: str, kind: type | None = None, package: str | None = None, group: str | None = None, *,
                 skip: tuple[str, ...] = ("registry",), check: Callable[[dict[str, T], T], None] | None = None):
        self.what, self.kind, self.package, self.group, self.skip, self.check = what, kind, package, group, skip, check
        self.items: dict[str, T] = {}
        self.targets: dict[str, str] = {}  # lazy "module:attr", imported when resolved
        self.loaded = False

    # -- registering ---------------------------------------------------------------------------------------------
    def register(self, item: T, name: str | None = None) -> T:
        """Register `item` under `name` (default: its `.name`)."""
        if self.kind is not None and not isinstance(item, self.kind):
            raise TypeError(f"only {self.kind.__name__} objects can be registered, got {type(item).__name__}")
        name = name if name is not None else item.name
        if (name in self.items and self.items[name] is not item) or name in self.targets:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        if self.check is not None:
            self.check(self.items, item)
        self.items[name] = item
        return item

    def plugin(self, name: str) -> Callable[[T], T]:
        """Decorator registering a function or class under `name`, returned unchanged."""
        def wrap(item: T) -> T:
            return self.register(item, name)

        return wrap

    def lazy(self, name: str, target: str) -> None:
        """Register `name` as the `"module:attr"` target, imported only when `name` is resolved."""
        if name in self.items or name in self.targets:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self.targets[name] = target

    # -- discovery -----------------------------------------------------------------------------------------------
    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        if self.package is not None and self.kind is not None:
            package = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(package.__path__):
                if info.name.startswith("_") or info.name in self.skip:
                    continue
                module = importlib.import_module(f"{self.package}.{info.name}")
                for value in vars(module).values():
                    if isinstance(value, self.kind) and value.__class__ is self.kind:
                        self.register(value)
        for ep in entry_points(group=self.group) if self.group else ():
            item = ep.load()
            if self.kind is not None and (not isinstance(item, self.kind) or item.name != ep.name):
                raise TypeError(f"entry point {ep.name!r} ({ep.value}) must be a {self.kind.__name__} "
                                f"named {ep.name!r}")
            self.register(item, ep.name)

    def reset(self) -> None:
        """Forget every discovered item: the next lookup discovers them again (for tests that install a plug-in).
        Items registered by decorator or as lazy targets stay."""
        if self.package is not None:
            self.items = {}
        self.loaded = False

    # -- lookup --------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self.load()
        return sorted({*self.items, *self.targets})

    def __contains__(self, name: str) -> bool:
        self.load()
        return name in self.items or name in self.targets

    def resolve(self, name: str) -> T:
        self.load()
        if name in self.targets:
            module, attr = self.targets.pop(name).split(":")
            self.items[name] = getattr(importlib.import_module(module), attr)
        if name not in self.items:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise KeyError(f"unknown {self.what} {name!r}; registered: {known}.{hint}")
        return self.items[name]

    def values(self) -> list[Any]:
        """Every item, lazy ones imported, in registration order."""
        self.load()
        for name in list(self.targets):
            self.resolve(name)
        return list(self.items.values())
