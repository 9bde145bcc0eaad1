"""Test accuracy of a trained model: the mean over all test questions and all samples (as the paper)."""

from __future__ import annotations

import polars as pl

from loop.config import RunConfig
from loop.grading import grade_many
from loop.model.sampling import Sampler


def evaluate(cfg: RunConfig, sampler: Sampler, test: pl.DataFrame, *, seed: int) -> dict[str, float | int]:
    """Sample `evaluation.n_samples` completions per test question and grade them by final answer.

    Returns accuracy (unparseable = wrong), n_questions, n_samples and the unparseable share.
    """
    n = cfg.evaluation.n_samples
    completions = sampler.sample(test["question"].to_list(), n, seed=seed)
    flat = [c for comps in completions for c in comps]
    references = [ans for ans in test["answer"] for _ in range(n)]
    grades = grade_many(flat, references, cfg.task)
    total = n * test.height
    return {"accuracy": sum(g.correct for g in grades) / total, "n_questions": test.height, "n_samples": n,
            "unparseable": sum(not g.parsed for g in grades) / total}
