"""Preparing a run, once, before round 0: check the strategies and the signals they read, draw and check each
replicate's examples (lengths under the run's tokenizer), open the store with the provenance manifest (library
versions, machine, weights and data hashes), store the examples and what loading did, and compute the static and
base-model signals. Idempotent: a prepared store is read back."""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import polars as pl
import torch

import strategies.registry as registry
from loop.control.controller import AUTO, AutoParams
from loop.data.checks import check_examples
from loop.data.load import load_data
from loop.model.backends import sampling_engine
from loop.model.lengths import check_lengths, context_size
from loop.model import trackers
from loop.model.loading import resolve_path, weights_file
from loop.model.precision import resolve_precision
from loop.run.context import RunContext
from loop.selection import SELECTORS
from loop.signals import compute as signal_store
from loop.signals.compute import PRE_TRAINING_SCOPES
from loop.store import ConfigMismatchError, layout
from loop.store.manifest import Additions
from loop.store.files import file_sha256


def prepare(ctx: RunContext) -> None:
    """Validate config + data, open the store, write each replicate's examples and base signals. Idempotent."""
    cfg = ctx.cfg
    trackers.check_available(cfg)  # a missing tracker package stops the run here, before any training
    for spec in cfg.selection.strategies:
        # an unknown strategy (or arm, or auto param, or a strategy's selector) stops the run here, before training
        for name in AutoParams.parse(spec.params).arms if spec.name == AUTO else (spec.name,):
            SELECTORS.resolve(registry.resolve(name).selector)
    needed = ctx.providers(ctx.all_needs())  # so does a signal no provider writes
    drawn = _draw(ctx, {p.name for p in needed if p.level == "seed"})
    ctx.store.open(cfg, _manifest(ctx, drawn), check_additions=lambda added: _check_added(ctx, added))
    for seed, (examples, report) in drawn.items():
        if report is not None:  # what loading did (skipped rows, links, contamination), kept with the run
            _store_report(ctx, seed, report)
        if ctx.store.read_parquet(layout.examples_path(seed)) is None:
            ctx.store.write_parquet(layout.examples_path(seed), examples)
        ctx.remember_examples(seed, examples)
    signal_store.pre_training(ctx, [p for p in needed if p.scope in PRE_TRAINING_SCOPES], drawn)


def _check_added(ctx: RunContext, added: Additions) -> None:
    """Refuse strategies added to a stored run that read what its first start did not compute: a signal none of
    the stored strategies reads (the shared round 0 and the base model computed only theirs), or the dev accuracy
    of every round that `auto` rewards itself with (measured only where the stored run had an `auto`)."""
    if not added.strategies:
        return
    kept = [s for s in ctx.cfg.selection.strategy_names if s not in added.strategies]
    computed = ctx.all_needs(kept)
    for label in added.strategies:
        missing = ctx.needs(label) - computed
        if missing:
            raise ConfigMismatchError(
                f"{ctx.store.location}: the added strategy {label!r} reads {sorted(missing)}, which the stored run's "
                f"strategies ({', '.join(kept)}) did not compute; run it with them in another out_dir")
    added_autos = [s for s in added.strategies if ctx.cfg.selection.spec(s).name == AUTO]
    if added_autos and not any(ctx.cfg.selection.spec(s).name == AUTO for s in kept):
        raise ConfigMismatchError(
            f"{ctx.store.location}: the added `auto` ({', '.join(added_autos)}) reads every round's dev accuracy, "
            "which the stored run did not measure (it had no `auto`); run it with them in another out_dir")


def ensure_prepared(ctx: RunContext, seed: int) -> None:
    """Prepare the run where replicate `seed`'s examples are not stored yet (a step or a sweep run started on a fresh
    store prepares it first)."""
    if not ctx.is_prepared(seed):
        prepare(ctx)


def _draw(ctx: RunContext, seed_level: set[str]) -> dict[int, tuple[pl.DataFrame, object]]:
    """Each replicate's examples and the loading report (None where the store already held them), checked."""
    cfg = ctx.cfg
    drawn: dict[int, tuple[pl.DataFrame, object]] = {}
    for seed in cfg.seeds:
        examples = ctx.store.read_parquet(layout.examples_path(seed))
        report = None
        if examples is None:
            if not cfg.data.per_replicate and drawn:  # one draw, shared by every replicate
                examples, report = next(iter(drawn.values()))
            else:
                examples, report = load_data(ctx.data_config(seed))
                # Lengths under the run's tokenizer, before any training: an example too long fails here, not
                # in the round that happens to select it (and again at every resume).
                examples, lengths = check_lengths(cfg, ctx.tokenizer, examples, _context(ctx))
                for reason, n in lengths.dropped.items():
                    report.drop(reason, n)
        check_examples(cfg, examples, seed_level)
        drawn[seed] = (examples, report)
    return drawn


def _manifest(ctx: RunContext, drawn: dict[int, tuple[pl.DataFrame, object]]) -> dict:
    cfg = ctx.cfg
    return {
        "versions": _versions(),
        "machine": _machine(ctx.device),
        "model": cfg.model.name_or_path,
        "model_weights_sha256": _weights_hash(cfg),
        "precision": resolve_precision(cfg.model, cfg.train, ctx.device).name,
        "sampling_engine": sampling_engine(cfg, ctx.device),
        "data_per_replicate": cfg.data.per_replicate,
        # each `auto`'s params as this code runs them: a default that changes between a start and its resume would
        # make the resumed chain decide otherwise than it began
        "strategy_params": {spec.key: AutoParams.parse(spec.params).as_run()
                            for spec in cfg.selection.strategies if spec.name == AUTO},
        "examples": {str(seed): {"rows": ex.height, "sha256": hashlib.sha256(ex.write_csv().encode()).hexdigest()}
                     for seed, (ex, _) in drawn.items()},
        "opened": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _store_report(ctx: RunContext, seed: int, report) -> None:
    ctx.store.write_json(layout.data_report_path(seed), {
        "summary": str(report), "counts": report.counts, "dropped": report.dropped,
        "linked_to_nearest_seed": report.linked_nearest,
        "validation": [{"source": v.source, "rows": v.n_rows, "valid": v.n_valid, "skipped": v.skipped,
                        "problems": v.counts} for v in report.validation]})
    if report.contamination is not None and report.contamination.height:
        ctx.store.write_parquet(layout.contamination_path(seed), report.contamination)


def _context(ctx: RunContext) -> int | None:
    from transformers import AutoConfig

    return context_size(AutoConfig.from_pretrained(resolve_path(ctx.cfg.model),
                                                   trust_remote_code=ctx.cfg.model.trust_remote_code))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "polars", "prefect", "curation-loop"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _machine(device: torch.device) -> dict:
    out = {"platform": platform.platform(), "processor": platform.processor(), "device": str(device),
           "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def _weights_hash(cfg) -> str | None:
    path = weights_file(cfg.model)
    return file_sha256(path) if path is not None else None
