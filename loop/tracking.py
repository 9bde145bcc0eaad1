"""Record learning dynamics at epoch checkpoints: target NLL, memorized flag, and sample accuracy.

At a checkpoint that is not the last, only unmemorized examples are sampled; at the last, all are
(`dynamics.checkpoints_needing_samples` says why that gives the same pre-memorization accuracy).
"""

from __future__ import annotations

import time

import polars as pl

from loop.config import RunConfig
from loop.dynamics import Tau, checkpoints_needing_samples
from loop.grading import grade_many
from loop.model.backends import Backend
from loop.model.formatting import encode_for


def checkpoint_epochs(epochs: int, every: int) -> list[int]:
    """Epochs at which dynamics are recorded: every `every`-th, and always the last."""
    return sorted({e for e in range(every, epochs + 1, every)} | {epochs})


class DynamicsTracker:
    """Called at each epoch checkpoint with the model in training; builds the ledger rows.

    The checkpoint is measured through `backend` (scoring and sampling), under the name `{tag}-ep{epoch}`.
    """

    def __init__(self, cfg: RunConfig, tokenizer, examples: pl.DataFrame, tau: Tau, *, seed: int,
                 backend: Backend, tag: str, sample: bool = True, sample_all: bool = False):
        self.cfg, self.tokenizer, self.tau, self.seed = cfg, tokenizer, tau, seed
        self.backend, self.tag = backend, tag
        self.sample, self.sample_all = sample, sample_all
        self.examples = examples.select("id", "question", "solution", "answer")
        self.encoded = encode_for(cfg.model, tokenizer, self.examples)
        self.epochs = checkpoint_epochs(cfg.train.epochs, cfg.dynamics.every_n_epochs)
        self.rows: list[pl.DataFrame] = []
        self.seconds = 0.0  # all dynamics work, which the training time excludes
        self.stage_seconds = {"dynamics_nll": 0.0, "dynamics_sampling": 0.0, "dynamics_grading": 0.0}
        self.sampled = 0  # sequences drawn for dynamics
        self.sampled_if_all = 0  # sequences that sampling every example at every checkpoint would have drawn

    def at_epoch(self, model, epoch: int) -> None:
        if epoch not in self.epochs:
            return
        started = time.perf_counter()
        with self.backend.bind(model, tag=f"{self.tag}-ep{epoch}") as bound:
            self._record(bound, epoch)
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
            completions = bound.sampler.sample(todo["question"].to_list(), n, seed=self.seed * 1009 + epoch)
            self.stage_seconds["dynamics_sampling"] += time.perf_counter() - started
            self.sampled += n * todo.height
            self.sampled_if_all += n * self.examples.height
            started = time.perf_counter()
            grades = grade_many([c for comps in completions for c in comps],
                                [a for a in todo["answer"] for _ in range(n)], self.cfg.task)
            self.stage_seconds["dynamics_grading"] += time.perf_counter() - started
            per_example = [grades[i * n:(i + 1) * n] for i in range(todo.height)]
            counts = pl.DataFrame(
                {"example_id": todo["id"], "n_s": [n] * todo.height,
                 "n_c": [sum(g.correct for g in gs) for gs in per_example],
                 "n_u": [sum(not g.parsed for g in gs) for gs in per_example]},
                schema={"example_id": pl.String, "n_s": pl.Int64, "n_c": pl.Int64, "n_u": pl.Int64})
            frame = (frame.join(counts, on="example_id", how="left")
                     .with_columns(n_samples=pl.col("n_s").fill_null(0), n_correct=pl.col("n_c").fill_null(0),
                                   n_unparseable=pl.col("n_u").fill_null(0))
                     .drop("n_s", "n_c", "n_u"))
        self.rows.append(frame)

    def ledger(self) -> pl.DataFrame:
        return pl.concat(self.rows) if self.rows else pl.DataFrame()
