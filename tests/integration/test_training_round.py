"""A training round through the real trl SFTTrainer (full and LoRA) with dynamics at each epoch."""

import math

import polars as pl
import pytest
import torch

from loop.config import build_config
from loop.dynamics.ledger import checkpoints_needing_samples
from loop.embedded.task import make_task
from loop.model.inprocess import TransformersBackend
from loop.model.formatting import encode_example
from loop.model.loading import load_base, load_tokenizer
from loop.model.scoring import mean_nll
from loop.model.training import build_dataset, train_round
from loop.dynamics.tracking import DynamicsTracker

pytestmark = pytest.mark.integration
CPU = torch.device("cpu")


def config(model_dir, **extra):
    overrides = [f"model.name_or_path={model_dir}", "train.epochs=3", "train.learning_rate=3e-3",
                 "dynamics.tau_mode=absolute", "dynamics.tau=1.4", "sampling.max_new_tokens=24"]
    return build_config("smoke", overrides=overrides + [f"{k}={v}" for k, v in extra.items()])


@pytest.fixture(scope="module")
def seeds():
    return make_task(n_seeds=8, pool_per_seed=1, n_dev=0, n_test=4, seed=1).filter(pl.col("split") == "seed")


def test_full_fine_tuning_changes_every_parameter_and_records_dynamics(tiny_model_dir, seeds):
    cfg = config(tiny_model_dir)
    tok = load_tokenizer(cfg.model)
    before = {k: v.clone() for k, v in load_base(cfg.model, CPU).state_dict().items()}
    tracker = DynamicsTracker(cfg, tok, seeds, cfg.dynamics.tau, seed=0, backend=TransformersBackend(cfg, tok, CPU),
                              tag="t")
    model, seconds = train_round(cfg, tok, seeds, seed=0, device=CPU, tracker=tracker)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert set(changed) == {k for k, v in before.items() if v.is_floating_point()} - {
        k for k in before if "rotary" in k}
    ledger = tracker.ledger()
    assert sorted(ledger["epoch"].unique().to_list()) == [1, 2, 3]
    assert ledger.height == 3 * seeds.height and seconds > 0
    # At the last checkpoint every example is sampled; before it, only unmemorized ones.
    last = ledger.filter(pl.col("epoch") == 3)
    assert (last["n_samples"] == cfg.dynamics.n_samples).all()
    needed = checkpoints_needing_samples(ledger.drop("n_samples", "n_correct").with_columns(
        n_samples=0, n_correct=0), cfg.dynamics.tau, 3)
    sampled = ledger.filter(pl.col("n_samples") > 0)
    assert set(zip(sampled["example_id"], sampled["epoch"])) == set(zip(needed["example_id"], needed["epoch"]))


def test_the_nll_recorded_is_the_training_loss_on_the_same_tokens(tiny_model_dir, seeds):
    """Scoring and training see the same tokens: mean_nll equals the loss SFTTrainer's labels give."""
    cfg = config(tiny_model_dir)
    tok = load_tokenizer(cfg.model)
    model = load_base(cfg.model, CPU)
    row = build_dataset(tok, seeds.head(1), cfg.model, 256)[0]
    ids = torch.tensor([row["input_ids"]])
    labels = ids.clone()
    labels[0, torch.tensor(row["completion_mask"]) == 0] = -100
    with torch.no_grad():
        trainer_loss = model(input_ids=ids, labels=labels).loss.item()
    enc = encode_example(tok, seeds["question"][0], seeds["solution"][0], eos=cfg.model.eos_closes_target)
    assert row["input_ids"] == enc.input_ids
    assert mean_nll(model, [enc.input_ids], [enc.n_prompt], pad_id=tok.pad_token_id)[0] == pytest.approx(
        trainer_loss, rel=1e-5)
    assert tok.decode(enc.input_ids[enc.n_prompt:], skip_special_tokens=True) == f" {seeds['solution'][0]}\nDone."


def test_lora_trains_only_the_adapter(tiny_model_dir, seeds):
    cfg = config(tiny_model_dir, **{"model.lora": "{r: 4, alpha: 8, target_modules: [q_proj, v_proj]}"})
    tok = load_tokenizer(cfg.model)
    base = load_base(cfg.model, CPU).state_dict()
    model, _ = train_round(cfg, tok, seeds, seed=0, device=CPU)
    named = dict(model.named_parameters())
    lora = {k: v for k, v in named.items() if "lora_" in k}
    assert lora and all(v.requires_grad for v in lora.values())
    frozen = {k: v for k, v in named.items() if "lora_" not in k}
    assert not any(v.requires_grad for v in frozen.values())
    assert any(not torch.allclose(v, torch.zeros_like(v)) for k, v in lora.items() if "lora_B" in k)
    merged = model.merge_and_unload().state_dict()
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    assert math.isfinite(mean_nll(model, [[1, 5, 6, 7]], [2], pad_id=0)[0])


def test_padding_free_training_trains_the_same_weights_as_padded_batches(tiny_model_dir, seeds):
    """One unpadded row per batch (train.padding_free) is the same computation as padded batches: the attention of
    each example stops at its own boundary, so the weights agree to float32 rounding."""
    tok = load_tokenizer(config(tiny_model_dir).model)
    trained = {}
    for padding_free in (False, True):
        cfg = config(tiny_model_dir, **{"train.padding_free": padding_free, "train.epochs": 1})
        model, _ = train_round(cfg, tok, seeds, seed=0, device=CPU)
        trained[padding_free] = model.state_dict()
    base = load_base(config(tiny_model_dir).model, CPU).state_dict()
    for name, weight in trained[False].items():
        moved = (weight - base[name]).abs().max().item()
        assert torch.allclose(trained[True][name], weight, atol=max(1e-6, 1e-3 * moved)), name


def test_a_lora_round_is_the_same_whatever_ran_before_it_in_the_process(tiny_model_dir, seeds):
    """The adapter's random initialisation comes from the round's seed, not from the process's random state (what
    earlier steps, a resume or a scoring shard drew before): the same seed trains the same adapter."""
    cfg = config(tiny_model_dir, **{"model.lora": "{r: 4, alpha: 8, target_modules: [q_proj, v_proj]}",
                                    "train.epochs": 1})
    tok = load_tokenizer(cfg.model)
    first, _ = train_round(cfg, tok, seeds, seed=3, device=CPU)
    torch.rand(1000)  # other work drew from the global generator in between
    second, _ = train_round(cfg, tok, seeds, seed=3, device=CPU)
    adapters = [{k: v for k, v in m.state_dict().items() if "lora_" in k} for m in (first, second)]
    assert adapters[0] and adapters[0].keys() == adapters[1].keys()
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])
