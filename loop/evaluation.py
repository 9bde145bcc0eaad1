"""Sample accuracy of a trained model: per question, and the test accuracy the paper reports (the mean over all
questions and all samples)."""

from __future__ import annotations

import polars as pl

from loop import faults
from loop.config import RunConfig
from loop.grading import grade_many
from loop.model.sampling import Sampler


def sample_counts(cfg: RunConfig, sampler: Sampler, frame: pl.DataFrame, n: int, *, seed: int,
                  answer_prefix: str = "") -> pl.DataFrame:
    """`n` samples per question of `frame` (id, question, answer), graded by final answer.

    Returns id, n_samples, n_correct, n_unparseable per question, in row order. With `answer_prefix` the answer is
    forced to begin with it and the prefix is graded as part of the answer (it is part of what the model said).
    """
    faults.reached("evaluation.sample")
    completions = sampler.sample(frame["question"].to_list(), n, seed=seed, answer_prefix=answer_prefix)
    flat = [answer_prefix + c for comps in completions for c in comps]
    grades = grade_many(flat, [a for a in frame["answer"] for _ in range(n)], cfg.task)
    per_question = [grades[i * n:(i + 1) * n] for i in range(frame.height)]
    return pl.DataFrame(
        {"id": frame["id"], "n_samples": [n] * frame.height,
         "n_correct": [sum(g.correct for g in gs) for gs in per_question],
         "n_unparseable": [sum(not g.parsed for g in gs) for gs in per_question]},
        schema={"id": pl.String, "n_samples": pl.Int64, "n_correct": pl.Int64, "n_unparseable": pl.Int64})


def evaluate(cfg: RunConfig, sampler: Sampler, test: pl.DataFrame, *, seed: int) -> dict[str, float | int]:
    """Sample `evaluation.n_samples` completions per question of `test` and grade them by final answer.

    accuracy = (correct samples) / (questions x samples), unparseable = wrong; also n_questions, n_samples and the
    unparseable share.
    """
    n = cfg.evaluation.n_samples
    counts = sample_counts(cfg, sampler, test, n, seed=seed)
    total = n * test.height
    return {"accuracy": int(counts["n_correct"].sum()) / total, "n_questions": test.height, "n_samples": n,
            "unparseable": int(counts["n_unparseable"].sum()) / total}
