"""Stopping rules for the `auto` strategy: each returns its rule, its verdict and the evidence it read, and the first
rule that fires stops the loop (its reason is recorded)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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
