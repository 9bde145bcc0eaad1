"""Record learning dynamics at epoch checkpoints: target NLL, memorized flag, and sample accuracy.

At a checkpoint that is not the last, only unmemorized examples are sampled; at the last, all are
(`dynamics.checkpoints_needing_samples` says why that gives the same pre-memorization accuracy).
"""

from __future__ import annotations

import time

import polars as pl

from loop.config import RunConfig
from loop.dynamics import Tau, checkpoints_needing_samples
from loop.model.formatting import encode_examples
from loop.grading import grade_many
from loop.model.sampling import make_sampler
from loop.model.scoring import mean_nll


def checkpoint_epochs(epochs: int, every: int) -> list[int]:
    """Epochs at which dynamics are recorded: every `every`-th, and always the last."""
    return sorted({e for e in range(every, epochs + 1, every)} | {epochs})


class DynamicsTracker:
    """Called at each epoch checkpoint with the model in training; builds the ledger rows."""

    def __init__(self, cfg: RunConfig, tokenizer, examples: pl.DataFrame, tau: Tau, *, seed: int,
                 sample: bool = True, sample_all: bool = False):
        self.cfg, self.tokenizer, self.tau, self.seed = cfg, tokenizer, tau, seed
        self.sample, self.sample_all = sample, sample_all
        self.examples = examples.select("id", "question", "solution", "answer")
        encoded = encode_examples(tokenizer, self.examples, cfg.model.format)
        self.sequences = [e.input_ids for e in encoded]
        self.score_from = [e.n_prompt for e in encoded]
        self.epochs = checkpoint_epochs(cfg.train.epochs, cfg.dynamics.every_n_epochs)
        self.rows: list[pl.DataFrame] = []
        self.seconds = 0.0

    def at_epoch(self, model, epoch: int) -> None:
        if epoch not in self.epochs:
            return
        started = time.perf_counter()
        nll = mean_nll(model, self.sequences, self.score_from, pad_id=self.tokenizer.pad_token_id,
                       batch_size=self.cfg.dynamics.nll_batch_size)
        frame = pl.DataFrame({"example_id": self.examples["id"], "epoch": epoch, "nll": nll,
                              "n_samples": 0, "n_correct": 0, "n_unparseable": 0})
        if self.sample:
            last = self.epochs[-1]
            wanted = frame if self.sample_all else checkpoints_needing_samples(frame, self.tau, last)
            ids = set(wanted["example_id"].to_list())
            todo = self.examples.filter(pl.col("id").is_in(ids))
            sampler = make_sampler(model, self.tokenizer, self.cfg.sampling, self.cfg.model.format)
            n = self.cfg.dynamics.n_samples
            completions = sampler.sample(todo["question"].to_list(), n, seed=self.seed * 1009 + epoch)
            grades = grade_many([c for comps in completions for c in comps],
                                [a for a in todo["answer"] for _ in range(n)], self.cfg.task)
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
        self.seconds += time.perf_counter() - started

    def ledger(self) -> pl.DataFrame:
        return pl.concat(self.rows) if self.rows else pl.DataFrame()
