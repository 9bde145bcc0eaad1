"""Bandit policies over strategies (arms), pure functions of the history of finished rounds.

A policy's state is never kept between calls: it is replayed from the history (one row per finished round: the arm
chosen and its reward), so a resumed run decides exactly as an uninterrupted one. Every draw comes from the seed it
is given. `probabilities` keeps each arm at or above `floor`, so every arm, `random` included, keeps being tried.

Discounted Thompson sampling on Gaussian rewards (Garivier & Moulines' discounting, for a best arm that moves with
the budget): reward r_t of the arm pulled at round t is weighted gamma^(T - t); an arm's posterior mean is
    mu_a = sum_t w_t r_t / (sum_t w_t + prior_weight),   sd_a = sigma / sqrt(sum_t w_t + prior_weight),
with prior mean 0 and sigma the spread of all rewards seen (at least `min_sigma`). P(arm a is best) is estimated
from `n_draws` posterior draws and mixed with the floor: p_a = (1 - K floor) P_a + floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl


class Policy(Protocol):
    def probabilities(self, history: pl.DataFrame, arms: list[str], *, seed: int) -> dict[str, float]:
        """P(choose arm) for the next round, from `history` (columns round, arm, reward); sums to 1."""
        ...


@dataclass(frozen=True)
class DiscountedThompson:
    discount: float = 0.9
    floor: float = 0.1
    prior_weight: float = 1.0
    min_sigma: float = 0.01
    n_draws: int = 4000

    def __post_init__(self):
        if not 0 < self.discount <= 1:
            raise ValueError(f"discount must lie in (0, 1], got {self.discount}")
        if self.floor < 0:
            raise ValueError(f"floor must be >= 0, got {self.floor}")

    def posterior(self, history: pl.DataFrame, arms: list[str]) -> dict[str, tuple[float, float]]:
        """(mean, sd) of each arm's reward after the discounted history."""
        if history.height:
            last = int(history["round"].max())
            rewards = history["reward"].to_numpy().astype(float)
            sigma = max(float(np.std(rewards)) if rewards.size > 1 else 0.0, self.min_sigma)
        else:
            last, sigma = 0, self.min_sigma
        out = {}
        for arm in arms:
            rows = history.filter(pl.col("arm") == arm)
            w = self.discount ** (last - rows["round"].to_numpy().astype(float)) if rows.height else np.zeros(0)
            total = float(w.sum()) + self.prior_weight
            mean = float((w * rows["reward"].to_numpy().astype(float)).sum()) / total if rows.height else 0.0
            out[arm] = (mean, sigma / math.sqrt(total))
        return out

    def probabilities(self, history: pl.DataFrame, arms: list[str], *, seed: int) -> dict[str, float]:
        if not arms:
            raise ValueError("a bandit needs at least one arm")
        k = len(arms)
        if k * self.floor > 1:
            raise ValueError(f"floor {self.floor} x {k} arms exceeds 1")
        post = self.posterior(history, arms)
        rng = np.random.default_rng(seed)
        draws = np.column_stack([rng.normal(post[a][0], post[a][1], self.n_draws) for a in arms])
        best = np.bincount(draws.argmax(axis=1), minlength=k) / self.n_draws
        mixed = (1 - k * self.floor) * best + self.floor
        return {a: float(p) for a, p in zip(arms, mixed / mixed.sum())}


def choose(probabilities: dict[str, float], *, seed: int) -> str:
    """One arm drawn with the given probabilities, from `seed` alone."""
    arms = list(probabilities)
    u = np.random.default_rng(seed).random()
    return arms[min(int(np.searchsorted(np.cumsum([probabilities[a] for a in arms]), u, side="right")), len(arms) - 1)]


POLICIES = {"discounted_thompson": DiscountedThompson}
