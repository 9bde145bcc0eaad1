"""The compute-matched reference: the seed set alone, trained for as many optimizer steps as a strategy's round."""

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine
from loop.run.plan import Step, plan_steps
from loop.schema import COMPUTE_MATCHED

pytestmark = pytest.mark.integration


def test_it_trains_the_seeds_for_the_epochs_of_a_strategy_round(tmp_path):
    cfg = build_config("smoke", overrides=[f"out_dir={tmp_path}", "selection.compute_matched=true",
                                           "selection.strategies=[random]", "sampling.max_new_tokens=24"])
    steps = plan_steps(cfg)
    assert Step(0, COMPUTE_MATCHED, 1) in steps and Step(0, "random", 1) in steps
    engine = Engine(cfg)
    engine.prepare()
    engine.run_step(Step(0, "shared", 0))
    info = engine.run_step(Step(0, COMPUTE_MATCHED, 1))
    # Smoke: 16 seeds, 2 epochs; a round-1 strategy trains 16 + 8 = 24 examples: 2 x 24 / 16 = 3 epochs of seeds.
    assert info["epochs"] == 3 and info["n_trained"] == 16 and info["n_selected"] == 0
    assert info["n_examples"] == 24  # it stands where a strategy's round 1 stands on the examples axis
    ledger = engine.store.step_frame(0, COMPUTE_MATCHED, 1, "ledger")
    assert sorted(ledger["epoch"].unique().to_list()) == [1, 2, 3]
    seeds = set(engine.context.examples(0).filter(pl.col("split") == "seed")["id"])
    assert set(ledger["example_id"]) == seeds
