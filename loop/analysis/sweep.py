"""The generalization-prediction sweep (paper section 3): separate fine-tuning runs from the base model over
training configurations (learning rate, epochs, share of the data), each measured at every epoch checkpoint.

At every checkpoint a run records, for every trained example, the target NLL and the accuracy of
`dynamics.n_samples` samples (all examples, every checkpoint: pre-memorization accuracy at an intermediate
checkpoint j reads acc_j), and the accuracy on the dev and test splits. At the last checkpoint of the robustness run
the training questions are sampled again with forced answer prefixes. The threshold tau is not needed to run: it is
calibrated on dev afterwards (`loop.analysis.report_data`), so ledgers are stored unflagged.

A run is committed as one folder (`analysis/seed-S/run-K/`), atomically, and never recomputed on resume.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from loop.config import RunConfig, SweepRunConfig
from loop.evaluation import sample_counts
from loop.model import trackers
from loop.model.training import train_round
from loop.seeds import derived_seed
from loop.store import layout
from loop.dynamics.tracking import DynamicsTracker
from loop.run.context import RunContext
from loop.run.prepare import ensure_prepared, prepare


@dataclass(frozen=True)
class SweepRun:
    """Training configuration `index` of analysis.runs, trained on replicate `seed`'s data with its seed."""

    seed: int
    index: int
    learning_rate: float
    epochs: int
    fraction: float

    @property
    def key(self) -> str:
        return f"s{self.seed}-r{self.index}"

    @property
    def label(self) -> str:
        share = "" if self.fraction == 1.0 else f", {self.fraction:g} of the data"
        return f"lr {self.learning_rate:g}, {self.epochs} epoch{'s' if self.epochs != 1 else ''}{share}"


def plan_runs(cfg: RunConfig) -> list[SweepRun]:
    """Every run of the sweep: each configuration of analysis.runs for each replicate seed, longest first (so the
    longest run does not end alone)."""
    runs = [SweepRun(seed, i, _lr(cfg, r), _epochs(cfg, r), r.fraction)
            for seed in cfg.seeds for i, r in enumerate(cfg.analysis.runs)]
    return sorted(runs, key=lambda r: (-r.epochs * r.fraction, r.seed, r.index))


def run_dir(store_root: Path, run: SweepRun) -> Path:
    return store_root / layout.analysis_run_dir(run.seed, run.index)


def _lr(cfg: RunConfig, r: SweepRunConfig) -> float:
    return r.learning_rate if r.learning_rate is not None else cfg.train.learning_rate


def _epochs(cfg: RunConfig, r: SweepRunConfig) -> int:
    return r.epochs if r.epochs is not None else cfg.train.epochs


class Sweep:
    """Runs the sweep's training runs against one run store (a comparison's run context: its data, store and
    backend, prepared as a comparison's are)."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.context = RunContext(cfg)

    def prepare(self) -> None:
        prepare(self.context)

    def close(self) -> None:
        self.context.close()

    def is_done(self, run: SweepRun) -> bool:
        return self.context.store.is_committed(run_dir(self.context.store.root, run), layout.RUN_RECORD)

    def trained_examples(self, run: SweepRun) -> pl.DataFrame:
        """The seed set, or the seeded random share of it that `run.fraction` asks for (sorted by id)."""
        seeds = self.context.examples(run.seed).filter(pl.col("split") == "seed").sort("id")
        if run.fraction == 1.0:
            return seeds
        n = max(1, round(run.fraction * seeds.height))
        rng = np.random.default_rng(derived_seed("fraction", run.seed, run.index))
        return seeds[np.sort(rng.choice(seeds.height, n, replace=False)).tolist()]

    def run(self, run: SweepRun) -> dict:
        """Train `run` from the base, measure every checkpoint, commit; a finished run is read back."""
        folder = run_dir(self.context.store.root, run)
        if self.is_done(run):
            self.context.store.verify(folder, layout.RUN_RECORD)
            return json.loads((folder / layout.RUN_RECORD).read_text())
        ensure_prepared(self.context, run.seed)
        cfg = self.cfg.model_copy(update={"train": self.cfg.train.model_copy(
            update={"learning_rate": run.learning_rate, "epochs": run.epochs})})
        examples = self.context.examples(run.seed)
        train = self.trained_examples(run)
        held_out = {split: examples.filter(pl.col("split") == split) for split in ("dev", "test")}
        held_out = {k: v for k, v in held_out.items() if v.height}
        train_seed = derived_seed("train", run.seed, run.index)
        tracker = DynamicsTracker(cfg, self.context.tokenizer, train, None, seed=train_seed,
                                  backend=self.context.backend, tag=f"analysis-{run.key}", sample=True,
                                  sample_all=True, held_out=held_out)
        tracker_run = trackers.sweep_run(self.cfg, self.context.store.tracking_dir(), run.seed, run.index)
        model, train_seconds = train_round(cfg, self.context.tokenizer, train, seed=train_seed % (2**31),
                                           device=self.context.device, tracker=tracker, tracker_run=tracker_run)
        timings = [("train", train_seconds), *tracker.stage_seconds.items()]
        frames = {"ledger": tracker.ledger().with_columns(run=pl.lit(run.key)),
                  "accuracy": tracker.checkpoint_accuracy().with_columns(run=pl.lit(run.key))}
        robust = self.cfg.analysis.robustness
        if run.index == self.cfg.analysis.robustness_run(self.cfg.train.epochs) and robust.prefixes:
            started = time.perf_counter()
            frames["robustness"] = self._perturbed(run, model, train)
            timings.append(("robustness", time.perf_counter() - started))
        frames["timings"] = pl.DataFrame({"stage": [t[0] for t in timings], "seconds": [t[1] for t in timings]})
        info = {"seed": run.seed, "index": run.index, "key": run.key, "label": run.label,
                "learning_rate": run.learning_rate, "epochs": run.epochs, "fraction": run.fraction,
                "n_trained": train.height, "checkpoints": tracker.epochs, "seconds": sum(t[1] for t in timings)}
        self.context.store.commit_dir(folder, frames, info, layout.RUN_RECORD)
        # After the commit, as for a round: a tracker never shows a run the store lacks.
        trackers.log_checkpoints(tracker_run, frames["accuracy"].to_dicts())
        return info

    def _perturbed(self, run: SweepRun, model, train: pl.DataFrame) -> pl.DataFrame:
        """Each training question sampled at the last checkpoint with the answer forced to begin with each prefix:
        example_id, prefix, n_samples, n_correct, n_unparseable."""
        robust = self.cfg.analysis.robustness
        n = robust.n_samples or self.cfg.dynamics.n_samples
        questions = train.head(robust.max_examples) if robust.max_examples else train
        frames = []
        with self.context.backend.bind(model, tag=f"analysis-{run.key}-robustness") as bound:
            for prefix in robust.prefixes:
                counts = sample_counts(self.cfg, bound.sampler, questions, n,
                                       seed=derived_seed("robustness", run.seed, prefix), answer_prefix=prefix)
                frames.append(counts.rename({"id": "example_id"}).with_columns(prefix=pl.lit(prefix),
                                                                               run=pl.lit(run.key)))
        return pl.concat(frames)

    def run_all(self, progress: bool = True) -> None:
        from tqdm.auto import tqdm

        self.prepare()
        try:
            for run in tqdm(plan_runs(self.cfg), desc="predict-generalization", unit="run", disable=not progress):
                self.run(run)
        finally:
            self.close()
