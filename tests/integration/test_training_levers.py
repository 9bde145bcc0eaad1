"""The training step's speed levers change how a step is computed, never what: the lean trainer (no per-step
token metrics, no host waits) trains to the same weights as trl's SFTTrainer, under the same effective batch,
examples per epoch and optimizer; and the levers resolve as documented on each device."""

import polars as pl
import pytest
import torch

from loop.config import build_config
from loop.embedded.task import make_task
from loop.model.loading import load_base, load_tokenizer
from loop.model.training import train_round
from loop.model.training_levers import decoder_layers, instance_only, resolve_levers

pytestmark = pytest.mark.integration
CPU = torch.device("cpu")


def config(model_dir, *extra):
    return build_config("smoke", overrides=[f"model.name_or_path={model_dir}", "train.epochs=2",
                                            "train.learning_rate=3e-3", "train.batch_size=3",
                                            "train.gradient_accumulation_steps=2", *extra])


@pytest.fixture(scope="module")
def seeds():
    return make_task(n_seeds=14, pool_per_seed=1, n_dev=0, n_test=2, seed=3).filter(pl.col("split") == "seed")


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_the_lean_step_trains_the_same_weights_as_trl(tiny_model_dir, seeds, lora):
    extra = ["model.lora.r=4", "model.lora.target_modules=[q_proj,v_proj]"] if lora else []
    trained = {}
    for metrics in (True, False):
        cfg = config(tiny_model_dir, f"train.token_metrics={str(metrics).lower()}", *extra)
        tok = load_tokenizer(cfg.model)
        model, _ = train_round(cfg, tok, seeds, seed=5, device=CPU)
        trained[metrics] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base = load_base(config(tiny_model_dir).model, CPU).state_dict()
    moved = 0
    for name, weights in trained[True].items():
        lean = trained[False][name]
        # float32 on a CPU: the same kernels in the same order, so the same bits (bf16 rounding is the GPU's
        # allowance, tests/gpu).
        assert torch.equal(weights, lean), f"{name}: largest difference {(weights - lean).abs().max():.3g}"
        if "lora_B" in name:  # peft starts B at zero
            moved += bool(weights.abs().max() > 0)
        elif name in base:
            moved += not torch.equal(base[name], weights)
    assert moved > 0  # the round trained: equal weights are not both the untouched base


def test_levers_resolve_to_the_old_step_on_a_cpu_and_by_trackers_for_metrics(tiny_model_dir):
    t = config(tiny_model_dir).train
    levers = resolve_levers(t, CPU, trackers_on=False, checkpointing=False)
    assert (levers.token_metrics, levers.kernels, levers.compile) == (False, "torch", False)
    assert resolve_levers(t, CPU, trackers_on=True, checkpointing=False).token_metrics is True
    with pytest.raises(ValueError, match="train.kernels=liger needs a CUDA device"):
        resolve_levers(config(tiny_model_dir, "train.kernels=liger").train, CPU, trackers_on=False,
                       checkpointing=False)
    compiled = config(tiny_model_dir, "train.compile=true").train
    assert resolve_levers(compiled, CPU, trackers_on=False, checkpointing=False).compile is True
    assert resolve_levers(compiled, CPU, trackers_on=False, checkpointing=True).compile is False


def test_cuda_graphs_go_where_compiled_layers_go_and_pad_batches_to_a_bucket(tiny_model_dir):
    graphs = config(tiny_model_dir, "train.compile=true", "train.cuda_graphs=true").train
    assert graphs.length_bucket == 32  # a few recorded shapes unless the user picks the bucket
    assert config(tiny_model_dir, "train.compile=true", "train.cuda_graphs=true",
                  "train.length_bucket=16").train.length_bucket == 16
    on = resolve_levers(graphs, CPU, trackers_on=False, checkpointing=False)
    assert (on.compile, on.cuda_graphs) == (True, True) and "as CUDA graphs" in on.describe()
    off = resolve_levers(graphs, CPU, trackers_on=False, checkpointing=True)  # a checkpointed layer is not compiled
    assert (off.compile, off.cuda_graphs) == (False, False)
    for compile_ in ("auto", "false"):
        with pytest.raises(ValueError, match="train.cuda_graphs replays the layers train.compile compiles"):
            config(tiny_model_dir, f"train.compile={compile_}", "train.cuda_graphs=true")


@pytest.mark.parametrize("async_step", [False, True], ids=["masked", "asynchronous"])
def test_batches_padded_to_a_length_bucket_train_the_same_weights(tiny_model_dir, seeds, async_step, monkeypatch):
    """Padding a batch to a multiple of train.length_bucket adds positions that carry label -100 and, on the right,
    attend after every real token: the loss, its gradients and so the weights are the same within float32 rounding
    (the attention's sums run over more, masked, positions). Checked with the padding mask (the CPU's step) and
    without it (the asynchronous step's causal path)."""
    from transformers import Trainer

    widths, original = [], Trainer.training_step

    def recorded(self, model, inputs, *a, **kw):
        widths.append(inputs["input_ids"].shape[1])
        return original(self, model, inputs, *a, **kw)

    monkeypatch.setattr(Trainer, "training_step", recorded)
    trained = {}
    for bucket in (None, 16):
        cfg = config(tiny_model_dir, f"train.async_step={str(async_step).lower()}",
                     *([f"train.length_bucket={bucket}"] if bucket else []))
        widths.clear()
        model, _ = train_round(cfg, load_tokenizer(cfg.model), seeds, seed=5, device=CPU)
        trained[bucket] = (model.state_dict(), list(widths))
    (plain, plain_widths), (padded, padded_widths) = trained[None], trained[16]
    assert any(w % 16 for w in plain_widths) and all(w % 16 == 0 for w in padded_widths)
    assert [-(-w // 16) * 16 for w in plain_widths] == padded_widths  # the same batches, each padded up
    for name, weights in plain.items():
        assert torch.allclose(weights, padded[name], rtol=1e-5, atol=1e-6), \
            f"{name}: largest difference {(weights - padded[name]).abs().max():.3g}"


def test_a_patch_applied_instance_only_leaves_later_models_as_they_were(tiny_model_dir):
    """Liger's apply functions swap the modeling module's classes (and may swap a class's forward) for every
    model built later; instance_only keeps the patch on the instance and undoes the rest. The patch here does
    what Liger's does, with a subclass standing in for its kernel module (Liger needs a GPU)."""
    import sys

    model = load_base(config(tiny_model_dir).model, CPU)
    modeling = sys.modules[type(model).__module__]
    norm_cls = type(model.model.norm)
    norm_name = norm_cls.__name__
    causal_forward = type(model).forward
    patched_norm = type("PatchedNorm", (norm_cls,), {})

    def patch(m):
        setattr(modeling, norm_name, patched_norm)
        type(m).forward = lambda self, *a, **k: None
        modeling.LEFT_BEHIND = True
        m.model.norm.__class__ = patched_norm

    instance_only(model, patch)
    assert type(model.model.norm) is patched_norm  # the instance keeps its patch
    assert getattr(modeling, norm_name) is norm_cls and not hasattr(modeling, "LEFT_BEHIND")
    assert type(model).forward is causal_forward
    later = load_base(config(tiny_model_dir).model, CPU)
    assert type(later.model.norm) is norm_cls


def test_the_decoder_layers_are_the_models_repeated_blocks(tiny_model_dir):
    model = load_base(config(tiny_model_dir).model, CPU)
    layers = decoder_layers(model)
    assert len(layers) == model.config.num_hidden_layers
    assert all(type(layer).__name__.endswith("DecoderLayer") for layer in layers)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_compiled_layers_train_the_same_weights_within_rounding(tiny_model_dir, seeds, lora):
    """torch.compile fuses each layer's element-wise work, which reorders float sums: equal within float32
    rounding on a CPU, the round's data, batches and optimizer unchanged. Under LoRA the layers are compiled
    before peft wraps their projections, and the adapters train as uncompiled."""
    extra = ["model.lora.r=4", "model.lora.target_modules=[q_proj,v_proj]"] if lora else []
    trained = {}
    for compiled in ("false", "true"):
        cfg = config(tiny_model_dir, f"train.compile={compiled}", *extra)
        model, _ = train_round(cfg, load_tokenizer(cfg.model), seeds, seed=5, device=CPU)
        trained[compiled] = model.state_dict()
    # train.cuda_graphs compiles the same layers in reduce-overhead mode, on batches padded to 32 tokens. A CPU has
    # no graphs to record, so this checks the mode and the padding (the replay is tests/gpu's).
    cfg = config(tiny_model_dir, "train.compile=true", "train.cuda_graphs=true", *extra)
    model, _ = train_round(cfg, load_tokenizer(cfg.model), seeds, seed=5, device=CPU)
    trained["graphs"] = model.state_dict()
    base = load_base(config(tiny_model_dir).model, CPU).state_dict()
    for name, eager in trained["false"].items():
        for way in ("true", "graphs"):
            compiled = trained[way][name]
            assert torch.allclose(eager, compiled, rtol=1e-4, atol=1e-4), \
                f"{way}, {name}: largest difference {(eager - compiled).abs().max():.3g}"
    # The training moved the weights far more than the two paths differ (peft starts lora_B at zero).
    eager = trained["false"]
    step = max((v - base[k]).abs().max().item() if k in base else v.abs().max().item()
               for k, v in eager.items() if k in base or "lora_B" in k)
    apart = max((eager[k] - trained["true"][k]).abs().max().item() for k in eager)
    assert step > 100 * apart


def test_a_later_round_in_the_process_reuses_the_compiled_layers(tiny_model_dir, seeds):
    """Compiling is paid once per process, not per round: the layers of a later round's fresh model (same class,
    dynamic lengths) run on the graph the first round compiled. This is what makes `train.compile` pay across a
    worker's steps (loop.model.training_levers)."""
    from torch._dynamo.utils import counters

    cfg = config(tiny_model_dir, "train.compile=true")
    tok = load_tokenizer(cfg.model)
    train_round(cfg, tok, seeds, seed=5, device=CPU)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0  # the first round compiled (in this process, now or in an earlier test)
    train_round(cfg, tok, seeds.head(9), seed=6, device=CPU)  # other lengths, another model instance
    assert counters["stats"]["unique_graphs"] == graphs
