"""The asynchronous step (loop.model.async_step) trains what the lean step trains, and reads no value back from the
device per micro-batch where the lean step read four: checked on a CPU, where both run the same kernels."""

import polars as pl
import pytest
import torch

from loop.config import build_config
from loop.embedded.task import make_task
from loop.model.async_step import CausalRightPadded, asynchronous_step
from loop.model.causal_attention import CAUSAL_SDPA
from loop.model.loading import load_base, load_tokenizer
from loop.model.training import train_round
from loop.model.training_levers import resolve_levers
from tests.integration.test_causal_attention import qwen2
from tests.readbacks import ReadBacks

pytestmark = pytest.mark.integration
CPU = torch.device("cpu")
MICRO_BATCHES = 4  # 16 seeds at 4 a micro-batch, one epoch


def config(model_dir, *extra):
    return build_config("smoke", overrides=[f"model.name_or_path={model_dir}", "train.epochs=1",
                                            "train.learning_rate=3e-3", "train.batch_size=4",
                                            "train.gradient_accumulation_steps=2", "train.token_metrics=false",
                                            *extra])


@pytest.fixture(scope="module")
def seeds():
    return make_task(n_seeds=16, pool_per_seed=1, n_dev=0, n_test=2, seed=3).filter(pl.col("split") == "seed")


def trained(model_dir, seeds, *extra, epochs=1):
    from transformers import Trainer

    cfg = config(model_dir, f"train.epochs={epochs}", *extra)
    mode = ReadBacks()
    original = Trainer._inner_training_loop

    def counted(self, *a, **kw):
        with mode:
            return original(self, *a, **kw)

    Trainer._inner_training_loop = counted
    try:
        model, _ = train_round(cfg, load_tokenizer(cfg.model), seeds, seed=5, device=CPU)
    finally:
        Trainer._inner_training_loop = original
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, mode.count


def test_the_asynchronous_step_trains_the_lean_steps_weights_without_reading_back(tiny_model_dir, seeds):
    lean, lean_reads = trained(tiny_model_dir, seeds, "train.async_step=false")
    fast, fast_reads = trained(tiny_model_dir, seeds, "train.async_step=true")
    base = load_base(config(tiny_model_dir).model, CPU).state_dict()
    moved = 0
    for name, weights in lean.items():
        # Without the mask the kernel takes its causal path: the same sums in another order, float32 rounding.
        torch.testing.assert_close(fast[name], weights, rtol=1e-5, atol=1e-6, msg=name)
        moved += name in base and not torch.equal(base[name], weights)
    assert moved > 0
    # What a second epoch adds, per micro-batch: the lean step's NaN filter (two reads) and the mask builder's test
    # of the padding (two); the asynchronous step's none (the builder, whose test for packed rows would read once
    # where no mask is given, is kept out: loop.model.causal_attention).
    _, lean_reads_2 = trained(tiny_model_dir, seeds, "train.async_step=false", epochs=2)
    _, fast_reads_2 = trained(tiny_model_dir, seeds, "train.async_step=true", epochs=2)
    assert lean_reads_2 - lean_reads == 4 * MICRO_BATCHES
    assert fast_reads_2 - fast_reads == 0


def test_real_tokens_see_the_same_outputs_without_a_right_padding_mask(tiny_model_dir):
    model = load_base(config(tiny_model_dir).model, CPU).eval()
    ids = torch.tensor([[5, 9, 12, 7, 3, 4], [5, 9, 12, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask).logits
        causal = model(input_ids=ids).logits
    real = mask.bool()
    torch.testing.assert_close(causal[real], masked[real], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(causal[~real], masked[~real])  # padded positions differ, and carry no label


def test_the_asynchronous_step_resolves_by_device_and_metrics(tiny_model_dir):
    t = config(tiny_model_dir).train
    assert resolve_levers(t, CPU, trackers_on=False, checkpointing=False).async_step is False
    on = config(tiny_model_dir, "train.async_step=true").train
    assert resolve_levers(on, CPU, trackers_on=False, checkpointing=False).async_step is True
    # On a GPU auto takes it wherever token metrics are off; trackers turn them on, and they read the mask it drops.
    cuda = torch.device("cuda")  # resolving reads no card
    metrics_auto = config(tiny_model_dir, "train.token_metrics=auto").train
    assert resolve_levers(metrics_auto, cuda, trackers_on=False, checkpointing=False).async_step is True
    assert resolve_levers(metrics_auto, cuda, trackers_on=True, checkpointing=False).async_step is False
    with pytest.raises(ValueError, match="train.async_step=true needs train.token_metrics off"):
        resolve_levers(config(tiny_model_dir, "train.async_step=true", "train.token_metrics=true").train, CPU,
                       trackers_on=False, checkpointing=False)


class _TrainerParts:
    """The two parts of a trainer that `asynchronous_step` touches: its model and its collator."""

    def __init__(self, model):
        self.model = model
        self.data_collator = dict


@pytest.mark.parametrize("padded", [True, False])
def test_the_asynchronous_step_wraps_the_collator_and_switches_attention_only_inside(padded):
    trainer = _TrainerParts(qwen2())
    with asynchronous_step(trainer, True, torch.device("cpu"), longest=20, padded=padded):
        assert isinstance(trainer.data_collator, CausalRightPadded) and trainer.data_collator.inner is dict
        assert trainer.data_collator.strict is padded  # strict exactly where the builder is kept out
        assert (trainer.model.config._attn_implementation == CAUSAL_SDPA) is padded
    assert trainer.data_collator is dict and trainer.model.config._attn_implementation == "sdpa"
    with asynchronous_step(trainer, False, torch.device("cpu"), longest=20, padded=True):
        assert trainer.data_collator is dict and trainer.model.config._attn_implementation == "sdpa"
