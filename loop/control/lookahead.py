"""The `auto` controller's one-step lookahead, the pure part: from each arm's probe (a fine-tune on the data the
round would train on if that arm filled it, scored on the dev split: `loop.control.probe`), how likely each arm is
the best, and the arm the round commits to once that evidence is combined with the bandit's.

Evidence. Every arm's probe model is scored on the same dev items, so the arms are compared item by item (paired):
per dev item a score, higher = better (`loss`: minus the item's mean target NLL; `accuracy`: the item's share of
correct samples). P_look(a) = P(arm a has the highest mean dev score) under a bootstrap of the dev items, the items
resampled jointly for every arm, so that what the arms share (an item's difficulty) cancels; arms tied on every draw
(two arms that picked the same batch) share their probability.

Choice. The bandit's probabilities p_bandit (`loop.control.policy`, from the rewards of earlier rounds) and P_look
(from this round's probes) are two views of "which arm is best"; they are combined as a product of experts,
    p(a) = P_look(a) p_bandit(a) / sum_b P_look(b) p_bandit(b),
and the round takes the arm of highest p (ties: the bandit's order, then the arms' order), not a draw: the probes
have already tried every arm on this round's data, so a draw would throw evidence away. The bandit's floor keeps
p_bandit within [floor, 1 - (K - 1) floor], so one noisy reward shifts the odds between two arms by at most
(1 - (K - 1) floor) / floor (7x at K = 4, floor 0.1): it decides where the probes cannot tell arms apart, and cannot
overrule a clear probe. The bootstrap sees the evaluation items' noise only, not the noise of training itself (each
probe is one fine-tune). On `default-gpu` (2026-12-07, 16 replicates) that part proved small: probes averaged over 3
training seeds ranked the arms no better than single ones, while the standard error over the 32 dev items made
about half to four fifths of a probe gain's variance across replicates (bench/RESULTS.md); so the items, which the
bootstrap does see, are the larger part of the noise, and more of them the lever: `lookahead_holdout` (on by
default since it was measured, `loop.control.holdout`).

Each run (replicate) reads its own probes and its own rewards only: no evidence is pooled across the replicates of a
comparison, which a user with one run could not do and which would break the independence the report's intervals
assume.
"""

from __future__ import annotations

import numpy as np

METRICS = ("loss", "accuracy")


def probability_best(scores: dict[str, np.ndarray], *, seed: int, n_draws: int = 2000) -> dict[str, float]:
    """P(arm has the highest mean score) under a paired bootstrap of the items. `scores`: arm -> per-item scores
    (higher = better), the same items in the same order for every arm."""
    arms = list(scores)
    table = np.stack([np.asarray(scores[a], dtype=float) for a in arms])  # (arms, items)
    if table.shape[1] == 0:
        return {a: 1.0 / len(arms) for a in arms}
    draws = np.random.default_rng(seed).integers(0, table.shape[1], size=(n_draws, table.shape[1]))
    means = table[:, draws].mean(axis=2)  # (arms, draws)
    best = means == means.max(axis=0, keepdims=True)
    share = (best / best.sum(axis=0, keepdims=True)).mean(axis=1)  # ties split evenly
    return {a: float(p) for a, p in zip(arms, share)}


def paired_gains(scores: dict[str, np.ndarray], reference: str = "random") -> dict[str, tuple[float, float]]:
    """(mean, standard error) of each arm's per-item score minus the reference arm's: its gain over random on dev."""
    ref = np.asarray(scores[reference], dtype=float)
    out = {}
    for arm, values in scores.items():
        diff = np.asarray(values, dtype=float) - ref
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
        out[arm] = (float(diff.mean()) if diff.size else 0.0, se)
    return out


def combine(p_look: dict[str, float], p_bandit: dict[str, float]) -> tuple[str, dict[str, float]]:
    """The arm the round commits to and the combined probabilities (the product of experts above)."""
    arms = list(p_bandit)
    product = np.array([p_look[a] * p_bandit[a] for a in arms])
    combined = product / product.sum() if product.sum() > 0 else np.array([p_bandit[a] for a in arms])
    order = sorted(range(len(arms)), key=lambda i: (-combined[i], -p_bandit[arms[i]], i))
    return arms[order[0]], {a: float(p) for a, p in zip(arms, combined)}


def recorded_cost(decision: dict | None) -> dict:
    """What the lookahead behind a step's decision cost, as the step's record keeps it (`ProbeCost`'s fields:
    finetunes, examples_trained, seconds, ...); empty where the step ran no lookahead."""
    return ((((decision or {}).get("evidence") or {}).get("lookahead")) or {}).get("cost") or {}


def item_scores(metric: str, per_item: np.ndarray) -> np.ndarray:
    """Per-item dev scores, higher = better, from what a probe measured per item (mean NLL, or share correct)."""
    if metric == "loss":
        return -np.asarray(per_item, dtype=float)
    if metric == "accuracy":
        return np.asarray(per_item, dtype=float)
    raise ValueError(f"lookahead_metric must be one of {METRICS}, got {metric!r}")
