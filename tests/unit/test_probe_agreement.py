"""bench/probe_agreement.py pairs each probe of auto's lookahead with the realized gain of the same arm's fixed
chain on the same replicate: checked on a hand-made run store whose gains and batches are known."""

import polars as pl
import pytest

from bench.probe_agreement import noise_split, pairs, top_arm_hits
from loop.store.run_store import RunStore

# seed -> arm -> (probe dev gain, fixed chain's round-1 test accuracy); random scores 0.50 on every seed
CASES = {0: {"loss": (0.010, 0.58), "perplexity": (0.002, 0.49)},
         1: {"loss": (0.001, 0.55), "perplexity": (0.006, 0.52)},
         2: {"loss": (0.004, 0.53), "perplexity": (-0.003, 0.47)}}


def commit(store, seed, strategy, record, ids):
    store.commit_step(seed, strategy, 1, {"selected": pl.DataFrame({"id": ids})}, record)


@pytest.fixture
def store(tmp_path):
    store = RunStore(tmp_path)
    for seed, arms in CASES.items():
        commit(store, seed, "random", {"accuracy": 0.50}, ["r0", "r1"])
        probes = {"random": {"gain_vs_random": 0.0, "batch": ["r0", "r1"]}}
        for arm, (gain, accuracy) in arms.items():
            chosen = [f"{arm}-{seed}-a", f"{arm}-{seed}-b"]
            # perplexity's fixed chain on seed 2 selected another batch than the one probed
            commit(store, seed, arm, {"accuracy": accuracy}, ["other"] if (seed, arm) == (2, "perplexity") else chosen)
            probes[arm] = {"gain_vs_random": gain, "gain_se": 0.002 * (seed + 1), "batch": chosen}
        commit(store, seed, "auto", {"decision": {"evidence": {"lookahead": {"arms": probes}}}}, chosen)
    return store


def test_each_probe_is_paired_with_its_arms_realized_gain_on_the_same_replicate(store):
    rows = pairs(store, "auto", 1)
    got = {(r["seed"], r["arm"]): (r["probe_gain"], r["test_gain"], r["same_batch"]) for r in rows}
    assert len(rows) == 6
    for seed, arms in CASES.items():
        for arm, (gain, accuracy) in arms.items():
            probe, realized, same = got[(seed, arm)]
            assert probe == gain and realized == pytest.approx(accuracy - 0.50)
            assert same == ((seed, arm) != (2, "perplexity"))
    # the top probe is the top realized arm on seeds 0 and 2, not on seed 1; chance is 1/2 per seed
    assert top_arm_hits(rows) == (2, 3, 1.5)


def test_a_run_whose_auto_did_not_look_ahead_is_refused(tmp_path):
    store = RunStore(tmp_path)
    commit(store, 0, "random", {"accuracy": 0.5}, ["r0"])
    commit(store, 0, "auto", {"decision": {"evidence": {}}}, ["r0"])
    with pytest.raises(SystemExit, match="no lookahead evidence"):
        pairs(store, "auto", 1)


def test_the_noise_split_sets_the_spread_across_replicates_beside_the_error_within_one(store):
    split = noise_split(pairs(store, "auto", 1))
    gain, spread, error = split["loss"]  # gains 0.010, 0.001, 0.004; standard errors 0.002, 0.004, 0.006
    assert gain == pytest.approx(0.005) and spread == pytest.approx(0.0045826, rel=1e-4)
    assert error == pytest.approx(0.004)
    assert set(split) == {"loss", "perplexity"}
