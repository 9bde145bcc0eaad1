"""Stopping rules for the `auto` strategy: each returns its rule, its verdict and the evidence it read, and the first
rule that fires stops the loop (its reason is recorded).

A rule is one decorated function of the chain's state (`StopState`), in `STOPPING_RULES` (checked in registration
order; a third party adds one under the entry-point group curation_loop.stopping_rules). The auto params it reads
are declared with it and accepted in `{name: auto, params: {...}}` from then on:

    @stopping_rule("min_gain", params={"min_gain": None})
    def min_gain(state: StopState) -> StopCheck:
        limit = state.param("min_gain")
        return StopCheck("min_gain", limit is not None and bool(state.gains) and state.gains[-1] < limit,
                         {"last_gain": state.gains[-1] if state.gains else None, "limit": limit})
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loop.plugins import PluginRegistry

if TYPE_CHECKING:
    from loop.control.controller import AutoParams

STOPPING_RULES: PluginRegistry = PluginRegistry("stopping rule", group="curation_loop.stopping_rules")


@dataclass(frozen=True)
class StopCheck:
    rule: str
    stop: bool
    evidence: dict = field(default_factory=dict)


def total_examples(n_examples: int, limit: int | None) -> StopCheck:
    """Stop once the examples trained reach `limit` (the example budget)."""
    return StopCheck("total_examples", limit is not None and n_examples >= limit,
                     {"n_examples": n_examples, "limit": limit})


def target_dev(dev_accuracy: float | None, target: float | None) -> StopCheck:
    """Stop once dev accuracy reaches `target`."""
    hit = target is not None and dev_accuracy is not None and dev_accuracy >= target
    return StopCheck("target_dev_accuracy", hit, {"dev_accuracy": dev_accuracy, "target": target})


def dev_noise(accuracy: float, n_graded: int) -> float:
    """Standard error of the difference of two dev accuracies of n_graded samples each (binomial):
    sqrt(2 p (1 - p) / n)."""
    p = min(max(accuracy, 0.0), 1.0)
    return math.sqrt(2 * p * (1 - p) / max(n_graded, 1))


def plateau(gains: list[float], noise: float, rounds: int | None) -> StopCheck:
    """Stop when each of the last `rounds` dev gains is below the dev noise level (no gain beyond noise)."""
    recent = gains[-rounds:] if rounds else []
    hit = bool(rounds) and len(recent) == rounds and all(g < noise for g in recent)
    return StopCheck("plateau", hit, {"last_gains": recent, "noise": noise, "rounds": rounds})


def compute_budget(seconds: float, limit: float | None) -> StopCheck:
    """Stop once the chain's compute seconds reach `limit`."""
    return StopCheck("compute_seconds", limit is not None and seconds >= limit, {"seconds": seconds, "limit": limit})


def pool_exhausted(unused: int, generator: str | None = None) -> StopCheck:
    """Stop when no unused pool item is left and no generator is configured to make more (one that makes none that
    pass its checks leaves the round with what the pool had)."""
    return StopCheck("pool_exhausted", unused <= 0 and generator is None,
                     {"unused_pool_items": unused, "generator": generator})


@dataclass(frozen=True)
class StopState:
    """What a stopping rule reads of the auto chain after its last finished round: the examples trained, dev accuracy
    and the dev noise level, the rewards so far (`gains`), the chain's compute seconds, the unused pool items, and
    the auto params (`param`)."""

    n_examples: int
    dev_accuracy: float | None
    gains: list[float]
    noise: float
    seconds: float
    unused: int
    params: AutoParams

    def param(self, key: str) -> Any:
        return self.params.param(key)


def stopping_rule(name: str, *, params: dict[str, Any] | None = None) -> Callable:
    """Decorator registering `fn(state: StopState) -> StopCheck` under `name`; `params` are the auto params it reads,
    with their defaults."""
    def wrap(fn: Callable[[StopState], StopCheck]) -> Callable[[StopState], StopCheck]:
        fn.params = dict(params or {})
        return STOPPING_RULES.register(fn, name)

    return wrap


def rule_params() -> dict[str, Any]:
    """Every auto param a registered stopping rule reads, with its default."""
    return {key: value for rule in STOPPING_RULES.values() for key, value in getattr(rule, "params", {}).items()}


# -- the rules, in the order they are checked ---------------------------------------------------------------------
@stopping_rule("total_examples", params={"max_examples": None})
def _total_examples(state: StopState) -> StopCheck:
    return total_examples(state.n_examples, state.param("max_examples"))


@stopping_rule("target_dev_accuracy", params={"target_dev": None})
def _target_dev(state: StopState) -> StopCheck:
    return target_dev(state.dev_accuracy, state.param("target_dev"))


@stopping_rule("plateau", params={"plateau_rounds": None})
def _plateau(state: StopState) -> StopCheck:
    return plateau(state.gains, state.noise, state.param("plateau_rounds"))


@stopping_rule("compute_seconds", params={"max_seconds": None})
def _compute_budget(state: StopState) -> StopCheck:
    return compute_budget(state.seconds, state.param("max_seconds"))


@stopping_rule("pool_exhausted", params={"generate": None})
def _pool_exhausted(state: StopState) -> StopCheck:
    return pool_exhausted(state.unused, state.param("generate"))
