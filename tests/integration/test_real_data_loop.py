"""The whole loop on real text: the gsm8k preset on a small slice of the published GSM8K files, a tiny random
Llama with the char tokenizer, every strategy (premem through pool items linked to seeds by TF-IDF) through
one selection round, graded by the GSM8K grader."""

import json
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine
from loop.run.plan import plan_steps
from loop.schema import SHARED_STRATEGY

pytestmark = pytest.mark.integration
GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k"


@pytest.mark.skipif(not (GSM8K / "train.jsonl").is_file(), reason="../shared/data/gsm8k absent")
def test_the_loop_runs_on_a_gsm8k_slice(tiny_model_dir, tmp_path):
    cfg = build_config("gsm8k", overrides=[
        f"data.path={GSM8K}", "data.seed_limit=6", "data.pool_limit=6", "data.dev_limit=2", "data.test_limit=3",
        f"model.name_or_path={tiny_model_dir}", "model.dtype=float32", f"out_dir={tmp_path / 'run'}",
        "seeds=[0]", "device=cpu", "torch_threads=1",
        # GSM8K problems run to ~1,000 characters, one token each under the char tokenizer.
        "train.max_length=2048", "train.epochs=2", "train.learning_rate=1e-3", "train.batch_size=8",
        "train.gradient_accumulation_steps=1", "train.warmup_steps=0",
        "sampling.max_new_tokens=16", "sampling.batch_size=64",
        "dynamics.n_samples=2", "evaluation.n_samples=1",
        "selection.budgets=[3]", "selection.iid_extra_budgets=[]",
    ])
    engine = Engine(cfg)
    engine.run_all(progress=False)

    examples = engine.store.read_parquet("data/seed-0/examples.parquet")
    counts = dict(examples.group_by("split").len().iter_rows())
    assert counts == {"seed": 6, "pool": 6, "dev": 2, "test": 3}
    train_questions = {json.loads(line)["question"] for line in (GSM8K / "train.jsonl").open()}
    assert set(examples.filter(pl.col("split") != "test")["question"]) <= train_questions
    assert examples["answer"].null_count() == 0 and examples["solution"].str.contains("####").all()
    pool = examples.filter(pl.col("split") == "pool")
    seeds = set(examples.filter(pl.col("split") == "seed")["id"])
    assert set(pool["seed_id"]) <= seeds and pool["link_similarity"].is_between(0, 1).all()

    steps = plan_steps(cfg)
    assert len(steps) == 1 + 4  # round 0, then one round of random, loss, perplexity and premem
    assert all(engine.store.is_done(s.seed, s.strategy, s.round) for s in steps)
    evals = engine.store.evaluations()
    assert evals.height == len(steps) and evals["accuracy"].is_between(0, 1).all()
    assert evals.filter(pl.col("strategy") == SHARED_STRATEGY)["n_examples"].to_list() == [6]
    assert set(evals.filter(pl.col("round") == 1)["n_examples"]) == {9}
    for name in cfg.selection.strategy_names:
        picked = engine.store.step_frame(0, name, 1, "selected")["id"].to_list()
        assert len(picked) == 3 and set(picked) <= set(pool["id"])
    ledger = engine.store.ledgers()
    last = ledger.filter(pl.col("epoch") == 2)
    assert set(ledger["example_id"]) == seeds and (last["n_samples"] == 2).all()
    assert ledger["nll"].is_finite().all()
