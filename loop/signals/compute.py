"""Computing and reading signals for the ctx, each provider at its scope (`loop.signals.registry`): static and
base-model signals once per replicate before training (stored under `signals/seed-S/`), checkpoint-scope ones at
each epoch checkpoint and round-scope ones after the round (stored in the step's `signals.parquet`, one row per pool
item), and the joins that put them beside the candidates. Each function takes the run context
(`loop.run.context.RunContext`), never the engine."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import polars as pl

import loop.signals.registry as signals
from loop import faults
from loop.model.loading import load_base
from loop.model.precision import resolve_precision
from loop.store.layout import signal_cache, signal_path

if TYPE_CHECKING:  # the run context is handed down; this floor never imports the run's
    from loop.run.context import RunContext

PRE_TRAINING_SCOPES = ("static", "base")  # signals computed once per replicate, before any training
TRAINING_SCOPES = ("round", "checkpoint")  # signals of a round's models, stored in its step for the next round


def context(ctx: RunContext, seed: int, examples: pl.DataFrame, provider: signals.Signal,
            **parts) -> signals.SignalContext:
    """The narrow context `provider` computes from: its rows (pool items or seeds) of `examples`, and `parts` (the
    bound model, ledger, tau, epoch) of its scope."""
    level = "pool" if provider.level == "item" else "seed"
    return signals.SignalContext(
        cfg=ctx.cfg, tokenizer=ctx.tokenizer, examples=examples,
        rows=examples.filter(pl.col("split") == level).drop("split"), seed=seed,
        cache_dir=ctx.store.root / signal_cache(seed, provider.name),
        stored=lambda name: ctx.store.read_parquet(signal_path(seed, name)), **parts)


def pre_training(ctx: RunContext, providers: list[signals.Signal], drawn: dict) -> None:
    """Static and base-model signals of every replicate, computed once and stored (a stored one is read back).
    Replicates sharing one draw of the data (data.per_replicate off) share the computed frames."""
    cfg, store = ctx.cfg, ctx.store
    shared: dict[str, pl.DataFrame] = {}
    for seed, (examples, _) in drawn.items():
        todo = [p for p in providers if store.read_parquet(signal_path(seed, p.name)) is None]
        if not todo:
            continue
        model = None
        reused = set() if cfg.data.per_replicate else set(shared)  # one draw: the first replicate's frames
        if any(p.scope == "base" and p.name not in reused for p in todo):
            precision = resolve_precision(cfg.model, cfg.train, ctx.device)
            model = load_base(cfg.model, ctx.device, precision.weights)
        # Tagged as the base: a backend serves or reads the base's own files instead of saving a copy.
        with (ctx.backend.bind(model, tag="base") if model is not None else nullcontext()) as bound:
            for provider in todo:
                if provider.name in reused:
                    frame = shared[provider.name]
                else:
                    faults.reached("signals.compute")
                    frame = provider(context(ctx, seed, examples, provider, bound=bound))
                    shared[provider.name] = frame
                store.write_parquet(signal_path(seed, provider.name), frame)
        del model


def join_candidates(ctx: RunContext, step, pool: pl.DataFrame, needs: set[str]) -> pl.DataFrame:
    """`pool` with the signal columns `needs` joined: round- and checkpoint-scope ones from the parent step's
    stored frame, the others from the replicate's store. Seed-level signals reach generated items through their
    seed; a generated item without an item-level signal read here is left out."""
    prev = step.parent
    stored = None
    for provider in [p for p in ctx.providers(needs) if set(p.columns) & needs]:
        wanted = [c for c in provider.columns if c in needs]
        if provider.scope in TRAINING_SCOPES:
            if stored is None:
                stored = ctx.store.step_frame(prev.seed, prev.strategy, prev.round, "signals")
            frame = stored.select(provider.key, *wanted).unique(provider.key, keep="first", maintain_order=True)
        else:
            frame = ctx.store.read_parquet(signal_path(step.seed, provider.name)).select(provider.key, *wanted)
        pool = pool.join(frame, on=provider.key, how="left")
    generated = pl.col("source") == "generated" if "source" in pool.columns else pl.lit(False)
    for column in needs:
        pool = pool.filter(~(generated & pl.col(column).is_null()))
        if pool[column].null_count():
            raise ValueError(f"signal {column!r} is missing for {pool[column].null_count()} pool items")
    return pool


def at_checkpoints(ctx: RunContext, step, examples: pl.DataFrame, providers: list[signals.Signal]):
    """A tracker hook computing checkpoint-scope `providers` at each epoch checkpoint, and the frames it gathers
    (by provider name, one per checkpoint, with an `epoch` column)."""
    gathered: dict[str, list[pl.DataFrame]] = {p.name: [] for p in providers}

    def measure(bound, epoch: int) -> None:
        for provider in providers:
            faults.reached("signals.compute")
            signal_ctx = context(ctx, step.seed, examples, provider, bound=bound, epoch=epoch)
            gathered[provider.name].append(provider(signal_ctx).with_columns(epoch=pl.lit(epoch)))

    return (measure if providers else None), gathered


def after_round(ctx: RunContext, step, examples: pl.DataFrame, bound, ledger: pl.DataFrame, tau, wanted: set[str],
                gathered: dict[str, list[pl.DataFrame]]) -> pl.DataFrame:
    """The signals the next round reads, one row per pool item of `examples` (a seed-level signal joined to the
    items linked to its seed): round-scope ones from this round's final model and ledger, checkpoint-scope ones
    from `gathered`, as lists in epoch order."""
    pool = examples.filter(pl.col("split") == "pool").select("id", "seed_id")
    for provider in ctx.providers(wanted, TRAINING_SCOPES):
        faults.reached("signals.compute")
        if provider.scope == "round":
            frame = provider(context(ctx, step.seed, examples, provider, bound=bound, ledger=ledger, tau=tau))
        else:
            frame = (pl.concat(gathered[provider.name]).sort("epoch")
                     .group_by(provider.key, maintain_order=True).agg(*provider.columns))
        pool = pool.join(frame, on=provider.key, how="left")
    return pool
