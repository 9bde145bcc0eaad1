"""The lookahead's probes: for each arm's candidate batch, a fine-tune from the base on what the round would
train on (the seeds, every item selected before, the batch), scored on the dev split, and what that cost.

Why this shape. A round retrains from the base on seeds + everything selected so far (the paper's protocol), so the
probe trains on exactly that set: what it measures is the round the arm would run, not the batch in isolation. It
trains `epochs` (default: the round's own) with the warmup scaled by the same factor and the round's own training
seed, which every strategy shares (paired training noise), so arms differ by their data alone. The default was half
the round's epochs until the comparison of 2026-12-07 (`default-gpu`, 16 replicates, one H100): probes of the round's
full epochs agreed better with what the fixed chains then realized (r = 0.48 [0.17, 0.72] against 0.35 [0.01, 0.62];
the probes' top arm was the realized top arm in 10 of 16 replicates against 7) and `auto` reached 1.13x i.i.d.
against 1.08x (paired, 1.05x [0.94, 1.17]: not separated), at 1.85x the probes' seconds. A probe that stops at half
the epochs measures early training, which ranks arms differently from the end of the round.
With `repeats` > 1, each arm's batch is probed that many times, repeat k under its own training seed
(`loop.seeds.probe_train_seed`, repeat 0 the round's) shared by every arm, and an item's measurement is the mean over
the repeats, which divides one fine-tune's training-noise variance by R at R times the cost. Measured in the same
comparison, 3 repeats did not sharpen the probes (r = 0.35 [0.10, 0.53], the top arm in 5 of 16; `auto` 1.07x),
so the default stays 1: the probes' disagreement with the realized rounds is not training-seed noise.
`loss` (the default) reads each dev item's mean target NLL: teacher-forced, no sampling, so cheap and free of
sampling noise; `accuracy` samples the dev questions as the round's dev evaluation does. Arms that picked the same
batch share one probe. Each finished probe is kept in the run store at once (`loop.control.probe_store`): a step
killed mid-lookahead reruns only the probes it had not finished. Only seed and pool rows are trained on and only
dev rows (and the chain's kept-back pool items) are scored: no probe reads a test row. Each probe is counted
(fine-tunes, epochs, examples x epochs, optimizer steps, dev items and samples, seconds, probes read back) and the
engine books the seconds as the step's `lookahead` stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from loop import faults
from loop.control import probe_store
from loop.control.holdout import evaluation_rows
from loop.evaluation import sample_counts
from loop.model.formatting import encode_for
from loop.model.training import train_round
from loop.seeds import dev_sampling_seed, probe_train_seed

if TYPE_CHECKING:  # the run context is handed down; this floor never imports the run's
    from loop.run.context import RunContext


@dataclass
class ProbeCost:
    """What the probes of one decision spent, beside the round they decide."""

    finetunes: int = 0
    epochs: int = 0
    examples_trained: int = 0  # sum over probes of (examples x epochs): training compute in example-passes
    optimizer_steps: int = 0
    dev_items_scored: int = 0
    dev_samples: int = 0
    seconds: float = 0.0  # this process's; a reused probe's were spent by the process that trained it
    reused: int = 0  # probes read back from the run store (a rerun of a step killed mid-lookahead)

    def record(self) -> dict:
        return asdict(self)


def probe_epochs(round_epochs: int, lookahead_epochs: int | None) -> int:
    """The probe's epochs: as configured, else the round's own."""
    return lookahead_epochs if lookahead_epochs is not None else round_epochs


def probe_config(cfg, epochs: int):
    """The run config a probe trains under: `epochs`, and the warmup shortened in proportion (a probe that spent
    its few steps warming up would measure the warmup)."""
    warmup = round(cfg.train.warmup_steps * epochs / cfg.train.epochs)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs, "warmup_steps": warmup})})


def probe_arms(ctx: RunContext, step, used: list[str], batches: dict[str, list[str]], *, epochs: int,
               metric: str, repeats: int = 1, holdout: list[str] = ()) -> tuple[dict[str, np.ndarray], ProbeCost]:
    """Per arm, the per-item measurement of its probe (mean target NLL, or share of correct samples) on the dev items
    in id order, then the kept-back pool items `holdout` (`loop.control.holdout`) in id order, averaged over
    `repeats` probes under the repeats' training seeds, and the cost of all probes."""
    if repeats < 1:
        raise ValueError(f"lookahead_repeats must be >= 1, got {repeats}")
    started = time.perf_counter()
    cfg = probe_config(ctx.cfg, epochs)
    rows = ctx.rows(step)
    dev = evaluation_rows(ctx.split(step.seed, "dev").sort("id"), ctx.examples(step.seed), list(holdout))
    per_batch: dict[tuple[str, ...], np.ndarray] = {}
    cost = ProbeCost(epochs=epochs)
    out = {}
    for arm, batch in batches.items():
        key = tuple(sorted(batch))
        if key not in per_batch:
            train = rows.filter((pl.col("split") == "seed") | pl.col("id").is_in(set(used) | set(batch)))
            index = len(per_batch)
            per_batch[key] = np.mean([_kept_or_probed(ctx, step, cfg, train, dev, metric, index, repeat, cost)
                                      for repeat in range(repeats)], axis=0)
            t = cfg.train
            cost.finetunes += repeats
            cost.examples_trained += train.height * epochs * repeats
            steps = math.ceil(train.height / (t.batch_size * t.gradient_accumulation_steps)) * epochs
            cost.optimizer_steps += steps * repeats
            cost.dev_items_scored += dev.height * repeats
            cost.dev_samples += dev.height * cfg.evaluation.n_samples * repeats if metric == "accuracy" else 0
        out[arm] = per_batch[key]
    cost.seconds = time.perf_counter() - started
    return out, cost


def _kept_or_probed(ctx: RunContext, step, cfg, train: pl.DataFrame, dev: pl.DataFrame, metric: str, index: int,
                    repeat: int, cost: ProbeCost) -> np.ndarray:
    """The probe's per-item measurements: read back where a killed attempt at this step kept them
    (`loop.control.probe_store`), else trained, scored and kept."""
    eval_ids = dev["id"].to_list()
    key = probe_store.probe_key(train["id"].to_list(), eval_ids, epochs=cfg.train.epochs, metric=metric,
                                seed=probe_train_seed(step.seed, repeat), n_samples=cfg.evaluation.n_samples)
    kept = probe_store.load(ctx.store, step, key, eval_ids)
    if kept is not None:
        cost.reused += 1
        return kept
    values = _probe(ctx, step, cfg, train, dev, metric, index, repeat)
    probe_store.keep(ctx.store, step, key, eval_ids, values)
    faults.reached("lookahead.probe")
    return values


def _probe(ctx: RunContext, step, cfg, train: pl.DataFrame, dev: pl.DataFrame, metric: str, index: int,
           repeat: int) -> np.ndarray:
    seed = probe_train_seed(step.seed, repeat) % (2**31)
    model, _ = train_round(cfg, ctx.tokenizer, train, seed=seed, device=ctx.device)
    tag = f"s{step.seed}-{step.strategy}-r{step.round}-probe{index}" + (f"-rep{repeat}" if repeat else "")
    with ctx.backend.bind(model, tag=tag) as bound:
        if metric == "accuracy":
            counts = sample_counts(cfg, bound.sampler, dev, cfg.evaluation.n_samples,
                                   seed=dev_sampling_seed(step.seed, step.round))
            return (counts["n_correct"] / counts["n_samples"]).to_numpy().astype(float)
        return np.asarray(bound.scorer.mean_nll(encode_for(cfg.model, ctx.tokenizer, dev)), dtype=float)
