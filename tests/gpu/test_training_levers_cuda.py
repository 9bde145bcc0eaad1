"""The training-step levers on a real card: the lean loss, Liger's kernels (where installed) and compiled layers
train the embedded model to the same place as the step they replace, within bf16 noise, and `auto` takes them.
Skipped where torch sees no CUDA device (tests/integration/test_training_levers.py covers the CPU path)."""

import polars as pl
import pytest
import torch
from torch._dynamo.utils import counters

from loop.config import build_config
from loop.embedded.task import make_task
from loop.model.formatting import encode_examples
from loop.model.loading import load_base, load_tokenizer
from loop.model.precision import resolve_precision
from loop.model.scoring import mean_nll
from loop.model.training import train_round
from loop.model.training_levers import apply_model_levers, liger_available, resolve_levers

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
CUDA = torch.device("cuda")
OLD = ["train.token_metrics=true", "train.kernels=torch", "train.compile=false", "train.async_step=false"]
LEAN = ["train.token_metrics=false", "train.kernels=torch", "train.compile=false", "train.async_step=false"]
# Each lever beside the lean loss (Liger and compile do not combine: resolve_levers refuses the pair).
NEW = {"lean": LEAN, "lean+compile": [*LEAN[:2], "train.compile=true", LEAN[3]],
       "lean+async": [*LEAN[:3], "train.async_step=true"],
       "lean+async+compile": [*LEAN[:2], "train.compile=true", "train.async_step=true"],
       # compiled layers replayed as CUDA graphs, batches padded to 32 tokens (train.length_bucket's default there)
       "lean+async+graphs": [*LEAN[:2], "train.compile=true", "train.async_step=true", "train.cuda_graphs=true"]}
if liger_available():
    NEW["lean+liger"] = [LEAN[0], "train.kernels=liger", *LEAN[2:]]


@pytest.mark.parametrize("new", list(NEW))
def test_the_new_step_trains_where_the_old_one_does_within_bf16_noise(tiny_model_dir, new):
    seeds = make_task(n_seeds=96, pool_per_seed=1, n_dev=0, n_test=2, seed=7).filter(pl.col("split") == "seed")
    common = [f"model.name_or_path={tiny_model_dir}", "device=cuda", "train.epochs=2", "train.learning_rate=3e-3",
              "train.batch_size=8", "train.gradient_accumulation_steps=2"]
    trained, nll = {}, {}
    for name, levers in (("old", OLD), ("new", NEW[new]), ("old-again", OLD)):
        cfg = build_config("smoke", overrides=common + levers)
        tok = load_tokenizer(cfg.model)
        skipped = counters["inductor"]["cudagraph_skips"]
        model, _ = train_round(cfg, tok, seeds, seed=3, device=CUDA)
        if cfg.train.cuda_graphs:  # Inductor falls back to the compiled kernels, and says so, where it cannot
            assert counters["inductor"]["cudagraph_skips"] == skipped  # record: none may be skipped here
        trained[name] = {k: v.detach().float().clone() for k, v in model.named_parameters()}
        encoded = encode_examples(tok, seeds, eos=True)
        nll[name] = mean_nll(model, [e.input_ids for e in encoded], [e.n_prompt for e in encoded],
                             pad_id=tok.pad_token_id,
                             autocast=resolve_precision(cfg.model, cfg.train, CUDA).autocast()).mean()
    base_model = load_base(build_config("smoke", overrides=common).model, CUDA)
    base = {k: v.float() for k, v in base_model.named_parameters()}
    encoded = encode_examples(tok, seeds, eos=True)
    base_nll = mean_nll(base_model, [e.input_ids for e in encoded], [e.n_prompt for e in encoded],
                        pad_id=tok.pad_token_id).mean()
    moved = sum(float((trained["old"][k] - base[k]).norm()) for k in base)
    new_apart = sum(float((trained["new"][k] - trained["old"][k]).norm()) for k in base)
    noise = sum(float((trained["old-again"][k] - trained["old"][k]).norm()) for k in base)
    # The two paths end within a few percent of the distance training moved, and the training loss agrees.
    assert new_apart < 0.05 * moved, (new_apart, moved, noise)
    assert abs(nll["new"] - nll["old"]) < 0.02 * nll["old"], nll
    assert nll["old"] < base_nll - 0.2  # the round trained: its loss fell well beyond that tolerance


@pytest.mark.skipif(not liger_available(), reason="liger-kernel is not installed")
def test_liger_patches_the_trained_instance_only_and_refuses_compile(tiny_model_dir):
    cfg = build_config("smoke", overrides=[f"model.name_or_path={tiny_model_dir}", "device=cuda",
                                           "train.kernels=liger"])
    levers = resolve_levers(cfg.train, CUDA, trackers_on=False, checkpointing=False)
    model = load_base(cfg.model, CUDA)
    norm_cls = type(model.model.norm)
    apply_model_levers(model, levers)
    # Liger patches an instance by binding its own forward onto the module (the class stays the model's own).
    assert model.model.norm.forward.__func__.__module__.startswith("liger_kernel")
    later = load_base(cfg.model, CUDA).model.norm  # a later model is the model's own, class and forward
    assert type(later) is norm_cls and later.forward.__func__ is norm_cls.forward
    with pytest.raises(ValueError, match="do not combine"):
        resolve_levers(build_config("smoke", overrides=[f"model.name_or_path={tiny_model_dir}",
                                                        "train.kernels=liger", "train.compile=true"]).train,
                       CUDA, trackers_on=False, checkpointing=False)
