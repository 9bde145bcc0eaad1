"""Learning-dynamics metrics: the memorized flag and pre-memorization accuracy (Kang et al. 2024).

The ledger has one row per (trained example, epoch checkpoint) with columns
`example_id`, `epoch`, `nll` (mean target-token NLL = log PPL), `n_samples`, `n_correct`.
This module is the only home of both definitions; every other part of the project calls it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import polars as pl

Tau = float | Mapping[str, float] | pl.DataFrame


def memorization_threshold(tau: float) -> float:
    """The mean-NLL cut equivalent to tau: log(log PPL) < tau  <=>  mean NLL < exp(tau)."""
    return math.exp(tau)


def _with_tau(ledger: pl.DataFrame, tau: Tau) -> pl.DataFrame:
    if isinstance(tau, pl.DataFrame):
        if not {"example_id", "tau"} <= set(tau.columns):
            raise ValueError("a per-example tau frame needs columns 'example_id' and 'tau'")
        out = ledger.join(tau.select("example_id", pl.col("tau").cast(pl.Float64)), on="example_id", how="left")
    elif isinstance(tau, Mapping):
        frame = pl.DataFrame({"example_id": list(tau), "tau": [float(v) for v in tau.values()]})
        return _with_tau(ledger, frame)
    else:
        if not math.isfinite(float(tau)):
            raise ValueError(f"tau must be finite, got {tau}")
        out = ledger.with_columns(tau=pl.lit(float(tau)))
    missing = out.filter(pl.col("tau").is_null())["example_id"].unique().to_list()
    if missing:
        raise ValueError(f"no tau given for example ids {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return out


def memorized_flags(ledger: pl.DataFrame, tau: Tau) -> pl.DataFrame:
    """Add the boolean column `memorized`.

    memorized_k(i)  <=>  log(log(PPL_k(i))) < tau  <=>  nll_k(i) < exp(tau),
    PPL over the target tokens only, in exactly the training format. `tau` is one float, or a per-example
    mapping / frame (`example_id`, `tau`). A non-positive NLL counts as memorized.
    """
    # Compared in log space, as the formula is written (exp(tau) rounds: exp(log 0.1) > 0.1).
    nll = pl.col("nll")
    flagged = _with_tau(ledger, tau).with_columns(
        memorized=(nll <= 0) | (nll.clip(lower_bound=1e-300).log() < pl.col("tau"))
    )
    return flagged.drop("tau")


def checkpoints_needing_samples(ledger: pl.DataFrame, tau: Tau, last_epoch: int) -> pl.DataFrame:
    """Rows whose sample accuracy the definition reads: unmemorized checkpoints, plus every row at the last one.

    At a memorized checkpoint k the term acc_k * m_k is 0 whatever acc_k is, and acc_j is read only at
    j = last_epoch; so sampling just these rows gives the same pre-memorization accuracy as sampling all.
    """
    flagged = memorized_flags(ledger, tau)
    return flagged.filter(~pl.col("memorized") | (pl.col("epoch") == last_epoch))


def premem_by_checkpoint(ledger: pl.DataFrame, tau: Tau, by: tuple[str, ...] = ()) -> pl.DataFrame:
    """Pre-memorization accuracy of every example at every checkpoint j.

        premem_j(i) = min( max_{k <= j} acc_k(i) * m_k(i),  acc_j(i) ),   m_k(i) = 1[log(log PPL_k(i)) >= tau]

    i.e. the best accuracy reached at a checkpoint where the solution was not yet memorized, capped by the
    current accuracy; 0 when every checkpoint so far was memorized. acc_k = n_correct / n_samples.
    Rows at memorized checkpoints may carry n_samples = 0 (they were not sampled) except where the value
    is read as acc_j. Where checkpoint j was not sampled, acc_j is unknown and so is premem_j: both are missing
    (null), never the running best alone. `by` names key columns (a run) within which an example's checkpoints
    form one sequence. Returns the `by` columns, `example_id`, `epoch`, `memorized`, `accuracy`, `premem`.
    """
    needed = {*by, "example_id", "epoch", "nll", "n_samples", "n_correct"}
    if not needed <= set(ledger.columns):
        raise ValueError(f"ledger lacks columns {sorted(needed - set(ledger.columns))}")
    flagged = memorized_flags(ledger.select(sorted(needed)), tau).sort(*by, "example_id", "epoch")
    sequence = [*by, "example_id"]
    unsampled = flagged.filter(~pl.col("memorized") & (pl.col("n_samples") <= 0))
    if unsampled.height:
        row = unsampled.row(0, named=True)
        raise ValueError(
            f"example {row['example_id']!r} is not memorized at epoch {row['epoch']} but has no samples: "
            "its accuracy is part of pre-memorization accuracy"
        )
    accuracy = pl.when(pl.col("n_samples") > 0).then(pl.col("n_correct") / pl.col("n_samples"))
    return (
        flagged.with_columns(accuracy=accuracy)
        .with_columns(
            best=pl.when(pl.col("memorized")).then(0.0).otherwise(pl.col("accuracy")).cum_max().over(sequence)
        )
        # min_horizontal skips nulls, which would pass the running best off as premem_j where acc_j is unknown
        .with_columns(premem=pl.when(pl.col("accuracy").is_not_null()).then(pl.min_horizontal("best", "accuracy")))
        .select(*by, "example_id", "epoch", "memorized", "accuracy", "premem")
    )


def premem_accuracy(ledger: pl.DataFrame, tau: Tau) -> pl.DataFrame:
    """Pre-memorization accuracy of each example at its last checkpoint (the curation score).

        premem(i) = min( max_{k <= J} acc_k(i) * 1[log(log PPL_k(i)) >= tau],  acc_J(i) ),  J = last checkpoint

    Reads `example_id`, `epoch`, `nll`, `n_samples`, `n_correct`; returns `example_id`, `premem`.
    Every example must be sampled at its last checkpoint (acc_J is always read).
    """
    by_checkpoint = premem_by_checkpoint(ledger, tau)
    last = by_checkpoint.group_by("example_id").agg(pl.all().sort_by("epoch").last())
    unsampled = last.filter(pl.col("accuracy").is_null())
    if unsampled.height:
        raise ValueError(
            f"example {unsampled['example_id'][0]!r} has no samples at its last checkpoint "
            f"(epoch {unsampled['epoch'][0]}): acc_J is part of pre-memorization accuracy"
        )
    return last.select("example_id", "premem").sort("example_id")


def dataset_premem(ledger: pl.DataFrame, tau: Tau) -> float:
    """PreMem = mean over trained examples of premem(i): the paper's predictor of test accuracy."""
    return float(premem_accuracy(ledger, tau)["premem"].mean())


def checkpoint_summary(ledger: pl.DataFrame, tau: Tau, by: tuple[str, ...] = ()) -> pl.DataFrame:
    """Dataset-level measures at every checkpoint j (of every `by` group, e.g. a run), over its trained examples:

        PreMem_j = mean_i premem_j(i)        train_acc_j = mean_i acc_j(i)        memorized_j = mean_i m'_j(i)

    (m'_j(i) = 1 when example i is memorized at j). PreMem_j and train_acc_j are missing (null) at a checkpoint
    where some example was not sampled: a mean over the sampled ones alone would be another quantity.
    Returns the `by` columns, `epoch`, `premem`, `train_accuracy`, `memorized`, `n_examples`.
    """
    per_example = premem_by_checkpoint(ledger, tau, by)
    complete = pl.col("accuracy").null_count() == 0
    return (
        per_example.group_by(*by, "epoch")
        .agg(premem=pl.when(complete).then(pl.col("premem").mean()),
             train_accuracy=pl.when(complete).then(pl.col("accuracy").mean()),
             memorized=pl.col("memorized").cast(pl.Float64).mean(), n_examples=pl.len())
        .sort(*by, "epoch")
    )
