"""Pre-memorization accuracy and the memorized flag on hand-made ledgers."""

import math

import numpy as np
import polars as pl
import pytest

from loop.dynamics.ledger import (
    checkpoints_needing_samples,
    dataset_premem,
    memorized_flags,
    premem_accuracy,
    premem_by_checkpoint,
)

TAU = math.log(0.1)  # memorized iff mean target NLL < 0.1


def ledger(rows):
    return pl.DataFrame(rows, schema=["example_id", "epoch", "nll", "n_samples", "n_correct"], orient="row")


def test_never_memorized_is_capped_by_current_accuracy():
    led = ledger([("a", 1, 0.5, 5, 1), ("a", 2, 0.4, 5, 3), ("a", 3, 0.3, 5, 2)])
    # min(max(0.2, 0.6, 0.4), 0.4) = 0.4
    assert premem_accuracy(led, TAU)["premem"].to_list() == [pytest.approx(0.4)]


def test_accuracy_after_memorization_does_not_count():
    led = ledger([("a", 1, 0.5, 5, 2), ("a", 2, 0.05, 5, 5), ("a", 3, 0.01, 5, 5)])
    # unmemorized only at epoch 1 (acc 0.4); final acc 1.0 -> min(0.4, 1.0) = 0.4, while train acc is 1.0
    assert premem_accuracy(led, TAU)["premem"][0] == pytest.approx(0.4)


def test_memorized_at_every_checkpoint_scores_zero():
    led = ledger([("a", 1, 0.05, 0, 0), ("a", 2, 0.02, 5, 5)])
    assert premem_accuracy(led, TAU)["premem"][0] == 0.0


def test_by_checkpoint_values():
    led = ledger([("a", 1, 0.5, 4, 1), ("a", 2, 0.5, 4, 3), ("a", 3, 0.05, 0, 0), ("a", 4, 0.05, 4, 2)])
    got = premem_by_checkpoint(led, TAU)
    assert got["premem"].to_list()[:2] == [pytest.approx(0.25), pytest.approx(0.75)]
    assert got["memorized"].to_list() == [False, False, True, True]
    assert got["premem"][3] == pytest.approx(0.5)  # min(0.75, acc_4 = 0.5)
    # Epoch 3 was memorized and not sampled: acc_3 is unknown, so premem_3 is missing, not the running best 0.75.
    assert got["accuracy"][2] is None and got["premem"][2] is None


def test_threshold_is_strict_and_matches_paper_values():
    assert math.exp(-2.4) == pytest.approx(0.0907, abs=1e-4)  # GSM8K curation threshold
    led = ledger([("a", 1, 0.1, 1, 1), ("b", 1, 0.0999, 1, 1), ("c", 1, 0.0, 1, 1)])
    assert memorized_flags(led, TAU)["memorized"].to_list() == [False, True, True]


def test_per_example_tau():
    led = ledger([("a", 1, 0.15, 2, 1), ("b", 1, 0.15, 2, 1)])
    taus = pl.DataFrame({"example_id": ["a", "b"], "tau": [math.log(0.2), math.log(0.1)]})
    assert memorized_flags(led, taus)["memorized"].to_list() == [True, False]
    assert premem_accuracy(led, {"a": math.log(0.2), "b": math.log(0.1)})["premem"].to_list() == [0.0, 0.5]
    with pytest.raises(ValueError, match="no tau"):
        memorized_flags(led, {"a": -1.0})


def test_missing_samples_where_needed_is_an_error():
    with pytest.raises(ValueError, match="not memorized at epoch 1"):
        premem_accuracy(ledger([("a", 1, 0.5, 0, 0), ("a", 2, 0.5, 5, 1)]), TAU)
    with pytest.raises(ValueError, match="last checkpoint"):
        premem_accuracy(ledger([("a", 1, 0.5, 5, 1), ("a", 2, 0.01, 0, 0)]), TAU)
    with pytest.raises(ValueError, match="finite"):
        premem_accuracy(ledger([("a", 1, 0.5, 5, 1)]), float("nan"))


def test_dataset_premem_is_the_mean():
    led = ledger([("a", 1, 0.5, 5, 5), ("b", 1, 0.01, 5, 5)])
    assert dataset_premem(led, TAU) == pytest.approx(0.5)


def _brute_force(acc, nll, tau):
    """The formula written as a plain loop: min(max_k acc_k * 1[log nll_k >= tau], acc_J)."""
    best = max(a * (1 if n > 0 and math.log(n) >= tau else 0) for a, n in zip(acc, nll))
    return min(best, acc[-1])


def test_sampling_only_what_the_definition_needs_changes_nothing():
    """Dropping the samples of memorized, non-final checkpoints gives the same premem as sampling all."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        n_ex, n_ep, n = int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 11))
        rows = []
        for i in range(n_ex):
            for e in range(1, n_ep + 1):
                rows.append((f"x{i}", e, float(rng.choice([0.01, 0.05, 0.09, 0.1, 0.2, 0.5])), n,
                             int(rng.integers(0, n + 1))))
        full = ledger(rows)
        needed = checkpoints_needing_samples(full, TAU, last_epoch=n_ep)
        keep = set(zip(needed["example_id"], needed["epoch"]))
        partial = full.with_columns(
            n_samples=pl.when(pl.struct("example_id", "epoch").map_elements(
                lambda r: (r["example_id"], r["epoch"]) in keep, return_dtype=pl.Boolean))
            .then(pl.col("n_samples")).otherwise(0)
        )
        expected = premem_accuracy(full, TAU)
        assert premem_accuracy(partial, TAU).equals(expected), trial
        for ex in expected.iter_rows(named=True):
            part = full.filter(pl.col("example_id") == ex["example_id"]).sort("epoch")
            acc = (part["n_correct"] / part["n_samples"]).to_list()
            assert ex["premem"] == pytest.approx(_brute_force(acc, part["nll"].to_list(), TAU))
