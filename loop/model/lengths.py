"""Token lengths checked before round 0, under the run's own tokenizer and format.

An example longer than `train.max_length` would fail (or be cut) only in the round that happens to select it,
and fail again on every resume: so every example that can be trained (seeds, pool) is encoded exactly as training
encodes it and measured up front, and every question that will be sampled (seeds, pool, dev, test) must leave
room for `sampling.max_new_tokens` within the model's context. Offenders stop the run, each named by id (and
source), or with `data.skip_invalid` are dropped and counted, a seed taking its pool items with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from loop.config import RunConfig
from loop.model.formatting import encode_for, encode_prompt
from loop.store.layout import data_report_path

SHOWN = 20


class ExampleTooLongError(ValueError):
    """Examples whose tokens exceed train.max_length or the model's context."""


@dataclass
class LengthReport:
    longest_train: int = 0
    longest_prompt: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def context_size(config) -> int | None:
    """The model's context length in tokens, where its config states one."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _where(row: dict) -> str:
    return f"{row['id']}" + (f" ({row['source']})" if row.get("source") else "")


def check_lengths(cfg: RunConfig, tokenizer, examples: pl.DataFrame, context: int | None
                  ) -> tuple[pl.DataFrame, LengthReport]:
    """`examples` with every example fitting its uses, and the lengths seen. Raises ExampleTooLongError."""
    report = LengthReport()
    trainable = examples.filter(pl.col("split").is_in(["seed", "pool"]))
    train_limit = cfg.train.max_length if context is None else min(cfg.train.max_length, context)
    lengths = [len(e.input_ids) for e in encode_for(cfg.model, tokenizer, trainable)]
    too_long = trainable.with_columns(tokens=pl.Series(lengths, dtype=pl.Int64)).filter(pl.col("tokens") > train_limit)
    prompt_lengths = [len(encode_prompt(tokenizer, q, cfg.model.format)) for q in examples["question"]]
    report.longest_train = max(lengths, default=0)
    report.longest_prompt = max(prompt_lengths, default=0)
    problems: list[str] = [
        f"{_where(r)}: {r['tokens']} tokens (prompt + target) > train.max_length {cfg.train.max_length}"
        + ("" if context is None or context >= cfg.train.max_length else f" / model context {context}")
        for r in too_long.iter_rows(named=True)]
    bad = set(too_long["id"].to_list())
    if context is not None:
        room = context - cfg.sampling.max_new_tokens
        with_prompts = examples.with_columns(prompt_tokens=pl.Series(prompt_lengths, dtype=pl.Int64))
        cramped = with_prompts.filter(pl.col("prompt_tokens") > room)
        problems += [f"{_where(r)}: its {r['prompt_tokens']}-token prompt + sampling.max_new_tokens "
                     f"{cfg.sampling.max_new_tokens} exceed the model's context of {context} tokens"
                     for r in cramped.iter_rows(named=True)]
        bad |= set(cramped["id"].to_list())
    if not bad:
        return examples, report
    if not cfg.data.skip_invalid:
        shown = "\n  ".join(problems[:SHOWN]) + (f"\n  ... and {len(problems) - SHOWN} more"
                                                 if len(problems) > SHOWN else "")
        raise ExampleTooLongError(
            f"{len(bad)} examples do not fit, under the tokenizer of {cfg.model.name_or_path}:\n  {shown}\n"
            "Raise train.max_length (or lower sampling.max_new_tokens), or set data.skip_invalid: true to drop "
            f"them (counted in {data_report_path('S')} of the run store).")
    dropped_seeds = examples.filter(pl.col("id").is_in(bad) & (pl.col("split") == "seed"))["id"].to_list()
    gone = pl.col("id").is_in(bad) | (pl.col("split").eq("pool")
                                      & pl.col("seed_id").is_in(dropped_seeds).fill_null(False))
    for split, n in examples.filter(gone).group_by("split").len().iter_rows():
        report.dropped[f"{split} items too long for the model (data.skip_invalid)"] = n
    return examples.filter(~gone), report
