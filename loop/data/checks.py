"""Checking an Examples frame against the run before any training, also a frame read back from the run store:
budgets against the pool, seed links for seed-level signals, the threshold's column, and for real sources the rows
and the contamination policy again."""

from __future__ import annotations

import polars as pl

from loop.config import RunConfig
from loop.data.contamination import ContaminatedDataError, check_contamination
from loop.data.validation import validate_examples
from loop.schema import EXAMPLE_SCHEMA, SPLITS


def check_examples(cfg: RunConfig, examples: pl.DataFrame, seed_signals: set[str] = frozenset()) -> None:
    """Raise a ValueError naming the field when the data cannot serve this config.

    Reads columns id, seed_id, question, solution, answer, split (and style_floor for that tau mode).
    `seed_signals`: the seed-level signals the run reads, which need every pool item linked to a seed.
    For sources other than embedded also re-validates the rows and, unless data.contamination is allow,
    refuses seed/pool/dev questions that repeat a test question: a frame read back from the run store gets
    the same checks as a fresh one.
    """
    missing = [c for c in EXAMPLE_SCHEMA if c not in examples.columns]
    if missing:
        raise ValueError(f"examples lack columns {missing}")
    bad_split = examples.filter(~pl.col("split").is_in(SPLITS))
    if bad_split.height:
        raise ValueError(f"example {bad_split['id'][0]!r}: split {bad_split['split'][0]!r} not in {SPLITS}")
    counts = dict(examples.group_by("split").len().iter_rows())
    for split in ("seed", "pool", "test"):
        if not counts.get(split):
            raise ValueError(f"the data has no '{split}' examples")
    embedded = cfg.data.source == "embedded"
    extension = cfg.selection.extension(counts["seed"])
    needed = sum(cfg.selection.budgets) + sum(extension)
    if needed > counts["pool"]:
        hint = "" if embedded else (" (lower the budgets or selection.iid_reach, or give the pool more rows: "
                                    "data.pool_limit, data.seed_limit)")
        raise ValueError(f"selection.budgets {cfg.selection.budgets} + the i.i.d. extension {extension} add {needed} "
                         f"pool items but the pool holds {counts['pool']}{hint}")
    if seed_signals:
        seeds = set(examples.filter(pl.col("split") == "seed")["id"].to_list())
        pool = examples.filter(pl.col("split") == "pool")
        unlinked = pool.filter(pl.col("seed_id").is_null() | ~pl.col("seed_id").is_in(seeds))
        if unlinked.height:
            hint = "" if embedded or cfg.data.link != "none" else (
                "; set data.link: tfidf (or lsa) to link each pool item to its nearest seed question")
            raise ValueError(f"signal(s) {sorted(seed_signals)} score seeds, but pool item {unlinked['id'][0]!r} (and "
                             f"{unlinked.height - 1} more) has no seed_id naming a seed{hint}")
    if cfg.dynamics.tau_mode == "style_floor":
        if "style_floor" not in examples.columns:
            raise ValueError("dynamics.tau_mode 'style_floor' needs a style_floor column in the examples")
    if embedded:
        # The embedded generator keeps test questions distinct from every seed/pool question by construction;
        # its pool items are same-template siblings on purpose, which a near-duplicate check would flag.
        return
    validate_examples(examples, "examples", task=cfg.task)
    if cfg.data.contamination != "allow":
        test = examples.filter(pl.col("split") == "test")
        pairs = check_contamination(examples.filter(pl.col("split") != "test"), test,
                                    cfg.data.near_duplicate_threshold)
        if pairs.height:
            raise ContaminatedDataError(pairs, cfg.data.near_duplicate_threshold)
