"""Column names and dtypes of every table the loop reads or writes: defined once, here.

Examples (one row per problem):
    id, seed_id (null unless a pool item is linked to a seed), question, solution, answer,
    split (seed | pool | test | dev), plus optional metadata columns (level, subject, source,
    style_floor: the per-token entropy of the solution's phrasing, in nats, when known).
Dynamics ledger (one row per trained example and epoch checkpoint):
    strategy, seed, round, example_id, epoch, nll, n_samples, n_correct, memorized
    (and n_unparseable: samples with no final answer, counted wrong)
Evaluations (one row per trained model):
    strategy, seed, round, n_examples, accuracy, n_questions, n_samples
Timings (one row per stage of a step):
    strategy, seed, round, stage, seconds
"""

from __future__ import annotations

import polars as pl

SPLITS = ("seed", "pool", "test", "dev")

EXAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,
    "seed_id": pl.String,
    "question": pl.String,
    "solution": pl.String,
    "answer": pl.String,
    "split": pl.String,
}
REQUIRED_TEXT_FIELDS = ("id", "question", "solution", "answer", "split")

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "strategy": pl.String,
    "seed": pl.Int64,
    "round": pl.Int64,
    "example_id": pl.String,
    "epoch": pl.Int64,
    "nll": pl.Float64,
    "n_samples": pl.Int64,
    "n_correct": pl.Int64,
    "memorized": pl.Boolean,
}

EVAL_SCHEMA: dict[str, pl.DataType] = {
    "strategy": pl.String,
    "seed": pl.Int64,
    "round": pl.Int64,
    "n_examples": pl.Int64,
    "accuracy": pl.Float64,
    "n_questions": pl.Int64,
    "n_samples": pl.Int64,
}

TIMING_SCHEMA: dict[str, pl.DataType] = {
    "strategy": pl.String,
    "seed": pl.Int64,
    "round": pl.Int64,
    "stage": pl.String,
    "seconds": pl.Float64,
}

# Round 0 (seed set only) is trained once per paired seed and shared by every strategy.
SHARED_STRATEGY = "shared"
# The compute-matched reference: round r trains the seed set alone for as many optimizer steps as a strategy's
# round r takes on its larger set (selection.compute_matched).
COMPUTE_MATCHED = "compute_matched"
