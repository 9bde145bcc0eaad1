"""Sharded sampling and scoring (loop.model.shards) against the step's own process, on the embedded base: a bound
checkpoint (full weights or a LoRA adapter) saved, reloaded by each shard and run unit by unit gives exactly the
completions and NLLs of the in-process backend, for any number of shards; a call of at most one unit runs as one
uncut call; and shards run inside the training process leave a LoRA round exactly as it was."""

import numpy as np
import polars as pl
import pytest
import torch
from peft import LoraConfig, get_peft_model

from loop.config import build_config
from loop.embedded.task import make_task
from loop.model.inprocess import TransformersBackend
from loop.model.formatting import encode_for
from loop.model.loading import load_base, load_tokenizer
from loop.model.shards import LocalExecutor, ShardedBackend, UnitBackend, in_units

pytestmark = pytest.mark.integration
CPU = torch.device("cpu")


def config(unit: int, shards: int = 1):
    return build_config("smoke", overrides=[f"sampling.unit={unit}", f"scale.scoring.shards={shards}",
                                             "sampling.max_new_tokens=24", "torch_threads=1"])


@pytest.fixture(scope="module")
def examples():
    return make_task(n_seeds=7, pool_per_seed=1, n_dev=0, n_test=1, seed=3).filter(pl.col("split") == "seed")


def trained(kind: str):
    """The embedded base with weights moved off their pretrained values (as a round's training would)."""
    cfg = config(3)
    model = load_base(cfg.model, CPU)
    if kind == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in [p for p in model.parameters() if p.requires_grad][:6]:
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def measure(backend, model, examples, tokenizer, cfg):
    with backend.bind(model, tag="s0-test-r1-ep1") as bound:
        completions = bound.sampler.sample(examples["question"].to_list(), 2, seed=11)
        nll = bound.scorer.mean_nll(encode_for(cfg.model, tokenizer, examples))
    return completions, np.asarray(nll)


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_shards_compute_what_this_process_computes(kind, examples, tmp_path):
    cfg = config(3)
    tokenizer = load_tokenizer(cfg.model)
    model = trained(kind)
    here = measure(UnitBackend(TransformersBackend(cfg, tokenizer, CPU), 3), model, examples, tokenizer, cfg)
    assert len(here[0]) == examples.height and len(here[1]) == examples.height
    for shards in (1, 2, 3):
        cfg_s = config(3, shards)
        backend = ShardedBackend(cfg_s, tokenizer, CPU, tmp_path / f"backend-{shards}", LocalExecutor())
        completions, nll = measure(backend, model, examples, tokenizer, cfg_s)
        assert completions == here[0], f"{shards} shards sampled other completions"
        assert np.array_equal(nll, here[1]), f"{shards} shards scored other NLLs"
        assert not any((tmp_path / f"backend-{shards}" / "shards").iterdir())  # a checkpoint lives for its bind


def test_a_call_within_one_unit_runs_as_one_uncut_call(examples):
    cfg = config(examples.height)
    tokenizer = load_tokenizer(cfg.model)
    model = trained("full")
    backend = TransformersBackend(cfg, tokenizer, CPU)
    questions = examples["question"].to_list()
    encoded = encode_for(cfg.model, tokenizer, examples)
    with backend.bind(model, tag="x") as bound:
        cut = in_units(bound, examples.height)
        assert cut.sampler.sample(questions, 2, seed=5) == bound.sampler.sample(questions, 2, seed=5)
        assert np.array_equal(cut.scorer.mean_nll(encoded), np.asarray(bound.scorer.mean_nll(encoded)))
        # Cut in smaller units, later units draw under seeds of their own: other completions (same first unit).
        small = in_units(bound, 3).sampler.sample(questions, 2, seed=5)
        assert small[:3] == bound.sampler.sample(questions[:3], 2, seed=5)
        assert small != bound.sampler.sample(questions, 2, seed=5)


def test_shards_in_the_training_process_leave_a_lora_round_as_it_was(tmp_path):
    """LoRA, 3 checkpoints: shards that load each checkpoint in the training process itself (LocalExecutor) draw
    no random numbers that training reads afterwards (peft initialises an adapter before reading it); the round's
    ledger, signals and accuracy are those of the round scored in place."""
    from loop.run.engine import Engine
    from loop.run.plan import Step

    frames = {}
    for name, executor in (("here", None), ("shards", LocalExecutor())):
        cfg = build_config("smoke", overrides=[
            "model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}", "train.learning_rate=1e-3",
            "train.epochs=3", "train.batch_size=4", "seeds=[0]", "data.n_seeds=8", "data.n_test=8",
            "sampling.max_new_tokens=24", "sampling.unit=3", "scale.scoring.shards=2", "torch_threads=1",
            f"out_dir={tmp_path / name}"])
        engine = Engine(cfg, executor)
        engine.prepare()
        engine.run_step(Step(0, "shared", 0))
        engine.close()
        folder = tmp_path / name / "steps" / "seed-0" / "shared" / "round-0"
        frames[name] = {f: pl.read_parquet(folder / f"{f}.parquet") for f in ("ledger", "signals", "eval")}
    assert frames["here"]["ledger"]["epoch"].n_unique() == 3
    for table, frame in frames["here"].items():
        assert frame.equals(frames["shards"][table]), table
