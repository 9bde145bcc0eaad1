"""Record learning dynamics at epoch checkpoints: target NLL, memorized flag, and sample accuracy.

At a checkpoint that is not the last, only unmemorized examples are sampled; at the last, all are
(`dynamics.checkpoints_needing_samples` says why that gives the same pre-memorization accuracy). The paper's
analyses read acc_j at every checkpoint (`sample_all`), and may ask for the accuracy on held-out splits at every
checkpoint as well (`held_out`: the dev split for tau calibration, the test split for generalization prediction).
"""

from __future__ import annotations

import time

import polars as pl

from loop import faults
from loop.config import RunConfig
from loop.dynamics.ledger import Tau, checkpoints_needing_samples
from loop.evaluation import sample_counts
from loop.model.inprocess import Backend
from loop.model.formatting import encode_for
from loop.seeds import derived_seed


def checkpoint_epochs(epochs: int, every: int) -> list[int]:
    """Epochs at which dynamics are recorded: every `every`-th, and always the last."""
    return sorted({e for e in range(every, epochs + 1, every)} | {epochs})


class DynamicsTracker:
    """Called at each epoch checkpoint with the model in training; builds the ledger rows.

    The checkpoint is measured through `backend` (scoring and sampling), under the name `{tag}-ep{epoch}`.
    `held_out` maps a split name to its questions (id, question, answer): each is evaluated at every checkpoint with
    `evaluation.n_samples` samples per question, into `checkpoint_accuracy()`.
    """

    def __init__(self, cfg: RunConfig, tokenizer, examples: pl.DataFrame, tau: Tau | None, *, seed: int,
                 backend: Backend, tag: str, sample: bool = True, sample_all: bool = False,
                 held_out: dict[str, pl.DataFrame] | None = None, on_checkpoint=None):
        if sample and not sample_all and tau is None:
            raise ValueError("selective sampling needs tau (which checkpoints are memorized); use sample_all")
        self.cfg, self.tokenizer, self.tau, self.seed = cfg, tokenizer, tau, seed
        self.backend, self.tag = backend, tag
        self.sample, self.sample_all = sample, sample_all
        self.held_out = held_out or {}
        self.on_checkpoint = on_checkpoint  # (bound, epoch) -> None: checkpoint-scope signals, measured here too
        self.examples = examples.select("id", "question", "solution", "answer")
        self.encoded = encode_for(cfg.model, tokenizer, self.examples)
        self.epochs = checkpoint_epochs(cfg.train.epochs, cfg.dynamics.every_n_epochs)
        self.rows: list[pl.DataFrame] = []
        self.accuracy_rows: list[dict] = []
        self.seconds = 0.0  # all dynamics work, which the training time excludes
        self.stage_seconds = {"dynamics_nll": 0.0, "dynamics_sampling": 0.0}
        if self.held_out:
            self.stage_seconds["dynamics_held_out"] = 0.0
        self.sampled = 0  # sequences drawn for dynamics
        self.sampled_if_all = 0  # sequences that sampling every example at every checkpoint would have drawn

    def at_epoch(self, model, epoch: int) -> None:
        if epoch not in self.epochs:
            return
        faults.reached("dynamics.checkpoint")
        started = time.perf_counter()
        with self.backend.bind(model, tag=f"{self.tag}-ep{epoch}") as bound:
            self._record(bound, epoch)
            self._held_out(bound, epoch)
            if self.on_checkpoint is not None:
                self.on_checkpoint(bound, epoch)
        self.seconds += time.perf_counter() - started

    def _record(self, bound, epoch: int) -> None:
        started = time.perf_counter()
        nll = bound.scorer.mean_nll(self.encoded)
        self.stage_seconds["dynamics_nll"] += time.perf_counter() - started
        frame = pl.DataFrame({"example_id": self.examples["id"], "epoch": epoch, "nll": nll,
                              "n_samples": 0, "n_correct": 0, "n_unparseable": 0})
        if self.sample:
            last = self.epochs[-1]
            wanted = frame if self.sample_all else checkpoints_needing_samples(frame, self.tau, last)
            ids = set(wanted["example_id"].to_list())
            todo = self.examples.filter(pl.col("id").is_in(ids))
            n = self.cfg.dynamics.n_samples
            started = time.perf_counter()
            counts = sample_counts(self.cfg, bound.sampler, todo, n, seed=self.seed * 1009 + epoch)
            self.stage_seconds["dynamics_sampling"] += time.perf_counter() - started
            self.sampled += n * todo.height
            self.sampled_if_all += n * self.examples.height
            frame = (frame.drop("n_samples", "n_correct", "n_unparseable")
                     .join(counts.rename({"id": "example_id"}), on="example_id", how="left")
                     .with_columns(pl.col("n_samples", "n_correct", "n_unparseable").fill_null(0)))
        self.rows.append(frame)

    def _held_out(self, bound, epoch: int) -> None:
        n = self.cfg.evaluation.n_samples
        for split, questions in self.held_out.items():
            started = time.perf_counter()
            counts = sample_counts(self.cfg, bound.sampler, questions, n, seed=derived_seed(split, self.seed, epoch))
            self.stage_seconds["dynamics_held_out"] += time.perf_counter() - started
            total = n * questions.height
            self.accuracy_rows.append({"epoch": epoch, "split": split,
                                       "accuracy": int(counts["n_correct"].sum()) / total,
                                       "n_questions": questions.height, "n_samples": n})

    def ledger(self) -> pl.DataFrame:
        return pl.concat(self.rows) if self.rows else pl.DataFrame()

    def checkpoint_accuracy(self) -> pl.DataFrame:
        """epoch, split, accuracy, n_questions, n_samples: the held-out splits' accuracy at every checkpoint."""
        return pl.DataFrame(self.accuracy_rows, schema={"epoch": pl.Int64, "split": pl.String, "accuracy": pl.Float64,
                                                         "n_questions": pl.Int64, "n_samples": pl.Int64})
