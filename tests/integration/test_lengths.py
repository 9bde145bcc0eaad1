"""Examples too long for the run are found before round 0, named, and dropped only when asked."""

import json
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine
from loop.model.lengths import ExampleTooLongError

pytestmark = pytest.mark.integration
GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k"


def config(tiny_model_dir, tmp_path, *extra):
    return build_config("gsm8k", overrides=[
        f"data.path={GSM8K}", "data.seed_limit=20", "data.pool_limit=40", "data.dev_limit=2", "data.test_limit=3",
        f"model.name_or_path={tiny_model_dir}", f"out_dir={tmp_path / 'run'}", "seeds=[0]", "device=cpu",
        "sampling.max_new_tokens=16", "selection.budgets=[3]", "selection.iid_extra_budgets=[]", *extra])


@pytest.mark.skipif(not (GSM8K / "train.jsonl").is_file(), reason="../shared/data/gsm8k absent")
def test_an_example_longer_than_max_length_stops_the_run_before_training(tiny_model_dir, tmp_path):
    # Char tokens: GSM8K problems run to 300-1,000 tokens, so a 700-token limit catches some of them.
    cfg = config(tiny_model_dir, tmp_path, "train.max_length=700")
    with pytest.raises(ExampleTooLongError) as err:
        Engine(cfg).prepare()
    message = str(err.value)
    assert "> train.max_length 700" in message and "gsm8k-train-" in message and "skip_invalid" in message
    assert not (tmp_path / "run" / "steps").exists()  # nothing was trained


@pytest.mark.skipif(not (GSM8K / "train.jsonl").is_file(), reason="../shared/data/gsm8k absent")
def test_skip_invalid_drops_them_with_their_pool_items_and_counts_them(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, tmp_path, "train.max_length=700", "data.skip_invalid=true")
    engine = Engine(cfg)
    engine.prepare()
    examples = engine.context.examples(0)
    from loop.model.formatting import encode_for
    from loop.model.loading import load_tokenizer

    trainable = examples.filter(pl.col("split").is_in(["seed", "pool"]))
    assert max(len(e.input_ids) for e in encode_for(cfg.model, load_tokenizer(cfg.model), trainable)) <= 700
    seeds = set(examples.filter(pl.col("split") == "seed")["id"])
    assert set(examples.filter(pl.col("split") == "pool")["seed_id"].drop_nulls()) <= seeds
    dropped = json.loads((tmp_path / "run" / "data" / "seed-0" / "report.json").read_text())["dropped"]
    assert sum(n for reason, n in dropped.items() if "too long" in reason) > 0
