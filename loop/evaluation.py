"""Test accuracy of a trained model: the mean over all test questions and all samples (as the paper)."""

from __future__ import annotations

import polars as pl

from loop.config import RunConfig
from loop.grading import is_correct
from loop.sampling import TransformersSampler


def evaluate(cfg: RunConfig, model, tokenizer, test: pl.DataFrame, *, seed: int) -> dict[str, float | int]:
    """Sample `evaluation.n_samples` completions per test question and grade them by final answer."""
    sampler = TransformersSampler(model, tokenizer, cfg.sampling, cfg.model.format)
    n = cfg.evaluation.n_samples
    completions = sampler.sample(test["question"].to_list(), n, seed=seed)
    correct = sum(is_correct(c, ans, cfg.task) for comps, ans in zip(completions, test["answer"]) for c in comps)
    return {"accuracy": correct / (n * test.height), "n_questions": test.height, "n_samples": n}
