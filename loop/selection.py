"""Turn strategy scores into a batch: one convention, higher score = picked first, ties broken by a seeded key.

`top_k` over an indicator score (1 = eligible) is exactly the paper's threshold-then-uniform draw: every
eligible item ties, and the seeded tie-break makes the pick a uniform draw without replacement.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

import strategies.registry as registry
from loop.plugins import PluginRegistry
from loop.seeds import derived_seed

# Selectors by name (a strategy names its own: `strategies.registry.strategy(selector=...)`); a third party adds
# one under the entry-point group curation_loop.selectors: fn(candidates, scores, k, *, salt) -> ids.
SELECTORS: PluginRegistry = PluginRegistry("selector", group="curation_loop.selectors")


def stable_uniform(ids: pl.Series | list[str], salt: str) -> np.ndarray:
    """A uniform(0, 1) number per id that depends only on (salt, id), never on row order."""
    out = np.empty(len(ids))
    for i, item in enumerate(ids):
        digest = hashlib.blake2b(f"{salt}\x00{item}".encode(), digest_size=8).digest()
        out[i] = (int.from_bytes(digest, "big") + 0.5) / 2.0**64
    return out


def _check(candidates: pl.DataFrame, scores: pl.Series, k: int) -> np.ndarray:
    if scores.len() != candidates.height:
        raise ValueError(f"{scores.len()} scores for {candidates.height} candidates")
    if scores.null_count():
        raise ValueError("scores contain nulls")
    values = scores.cast(pl.Float64).to_numpy()
    if not np.isfinite(values).all():
        raise ValueError("scores must be finite")
    if k > candidates.height:
        raise ValueError(f"budget {k} is larger than the {candidates.height} unused pool items left")
    return values


@SELECTORS.plugin("top_k")
def select_top_k(candidates: pl.DataFrame, scores: pl.Series, k: int, *, salt: str) -> list[str]:
    """Ids of the k highest-scoring candidates; equal scores are ordered by `stable_uniform(id, salt)`."""
    values = _check(candidates, scores, k)
    ties = stable_uniform(candidates["id"], salt)
    order = np.lexsort((ties, -values))  # last key is primary: score descending, then the seeded key
    return candidates["id"].gather(order[:k]).to_list()


@SELECTORS.plugin("proportional")
def select_proportional(candidates: pl.DataFrame, scores: pl.Series, k: int, *, salt: str) -> list[str]:
    """k candidates drawn without replacement with probability proportional to score (Gumbel top-k)."""
    values = _check(candidates, scores, k)
    if (values < 0).any():
        raise ValueError("proportional selection needs non-negative scores")
    gumbel = -np.log(-np.log(stable_uniform(candidates["id"], salt)))
    with np.errstate(divide="ignore"):
        keys = np.log(values) + gumbel
    order = np.argsort(-keys, kind="stable")
    return candidates["id"].gather(order[:k]).to_list()


def choose_batch(candidates: pl.DataFrame, name: str, params: dict, budget: int, *, replicate: int, round_: int,
                 selected_before: tuple[str, ...] = (), n_seeds: int = 0) -> tuple[list[str], pl.Series]:
    """The ids registered strategy `name` (with `params`) picks from `candidates` at round `round_` of replicate
    `replicate`, and its scores. A round of that strategy selects this, and the auto controller's lookahead probes
    it for each arm: one function, so the lookahead scores exactly the batch the arm would take. The strategy's seed
    is derived from (replicate, round), and the tie-break salt `replicate:round` is shared by all strategies of the
    round (paired draws)."""
    chosen = registry.resolve(name)
    context = registry.StrategyContext(round=round_, budget=budget, selected_before=tuple(selected_before),
                                       n_seeds=n_seeds)
    scores = chosen(candidates, seed=derived_seed(replicate, round_), context=context, **params)
    batch = SELECTORS.resolve(chosen.selector)(candidates, scores, budget, salt=f"{replicate}:{round_}")
    return batch, scores
