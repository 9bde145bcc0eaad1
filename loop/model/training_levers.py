"""The training step's speed levers: the same loss and updates, computed with less host time per step.

A round's step on a small model is host-bound on a GPU (bench/gpu/2026-12-01-h200-profile.txt: 235 ms of host
work against 36 ms of kernels for 32 examples of a 0.5B model). Three levers cut the host side, and a fourth, the
asynchronous step, has a module of its own (loop.model.async_step) and is resolved here with them. None changes
what is computed, only how (checked by tests/integration/test_training_levers.py on CPU and
tests/gpu/test_training_levers_cuda.py on a card):

- `token_metrics` off (`LeanSFTTrainer`): trl's SFTTrainer scores every step's entropy and token accuracy and
  reads them, and its token count, back with `.item()`, which makes the host wait for the card three times a
  step. The lean trainer computes the same loss (summed target log-probabilities over the step's target tokens,
  trl's own fused head) and nothing else. The metrics only ever fed the experiment trackers, so `auto` keeps
  them where trackers are on. One wait remains per micro-batch (beside those `async_step` removes): trl's head
  gathers the target positions with a boolean mask, whose size the host must read.
- `kernels: liger`: Liger's Triton RMSNorm and SwiGLU replace a dozen element-wise launches per layer with
  two, on this model instance only. Liger's apply functions also swap the modeling module's classes for every
  model built later in the process (`modeling_qwen2.Qwen2RMSNorm = LigerRMSNorm`), so `instance_only` puts the
  module back once the instance is patched. RoPE stays the model's own (Liger has no instance patch for it).
- `compile`: each decoder layer is compiled with dynamic sequence length (one graph for every batch length,
  where compiling per shape recompiled at every batch), which fuses the layer's element-wise work and casts.
  It does not combine with Liger: torch 2.11's dynamo cannot trace Liger's autograd functions (an
  AssertionError in its autograd.Function tracing, seen on an H200 on 2026-12-06), so that pair is refused.
- `cuda_graphs` (with `compile`): each compiled layer's forward and backward are recorded as CUDA graphs
  (torch.compile's reduce-overhead mode, Inductor's CUDA graph trees) and replayed, one launch where the compiled
  layer launches dozens of kernels. The host's launches bound the compiled step (bench/RESULTS.md, 2026-12-07
  evening: 128 ms of host against 70 ms of kernels a step); its kernels alone bound it at 29.7% MFU
  (`kernel_bound_mfu` in bench/gpu_levers.py), so this lever can give at most 1.25x the compiled asynchronous step.
  A graph holds one shape, so batches are padded to `train.length_bucket` tokens (32 unless set): the padded
  positions carry label -100 and, right-padded, change no real token's output, so the loss and its gradients are
  the same; the padding costs about 7% more kernel time on 215-token rows. Each (rows, bucket) shape is recorded
  once per layer, and again for each round's model (new weights for its graphs to point at), after the graphs of
  the model before are cleared. Built on 2026-12-08 and tested on a CPU (where Inductor records no graphs: the step
  is the compiled one); not yet run on a card, so it stays off until tests/gpu and `levers-graphs` in
  bench/gpu_runs.sh have run.

Measured (bench/bench_gpu.py, Qwen2.5-0.5B shape, 32 examples per step, steady state past 8 warm-up steps):
- one H200, 2026-12-06: the preset step 31.1k tokens/s (9.3% MFU), the lean loss 49.7k (14.9%, 1.60x), the lean
  loss with Liger 44.8k (13.4%: slower, so not a default);
- one H100, 2026-12-07: the preset step 33.3k (10.0%), the lean loss 49.1k (14.7%), the lean loss with compiled
  layers 75.4k (22.6%, 2.26x the preset step, 1.53x the lean one; kernels 73 of its 91 ms against 81 of 140 ms).
  But compiling cost about 27 s more in the process's first train call (the whole call on 1,536 examples: 41.7 s
  against 17.3 s), which a 0.5B step at 1.53x repays only past about 3.8M trained tokens (about 17,000 examples x
  epochs of this length): more than a paper-scale round (1,000 seeds x 3 epochs). On a CPU a later train call in
  the same process compiled nothing (one graph serves every layer of every later model: 0.8 s against 31 s cold),
  so a worker pays it once across its steps. On the H100 too (2026-12-07): a second compiled train call in the
  process compiled nothing (2.0 s on 512 examples, 23.8% MFU steady, against 34.6 s for the first), while a new
  process with Inductor's disk cache warm still paid about 7 s. So `auto` leaves it off, and a run whose
  long-running workers train that much turns it on.

A fourth, `async_step` (loop.model.async_step), takes the host's remaining waits out of the lean step. On one H100
(2026-12-07, one run: `levers-async`): the preset step 31.6k tokens/s (9.5%), the lean loss 53.7k (16.1%), the lean
loss with the asynchronous step 64.2k (19.2%, 1.19x; the step `auto` takes on a GPU), compiled layers 82.8k
(24.8%), both 87.3k (26.2%, 2.76x the preset step).

Each lever is resolved for the device at hand by `resolve_levers`. On a CPU, kernels, compile and the asynchronous
step resolve to off and the lean loss trains bit-identical weights to trl's, so the CPU path's figures stay exactly
as they were.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from trl import SFTTrainer
from trl.trainer.utils import add_fused_lm_head

from loop.model.decoder_layers import decoder_layers

log = logging.getLogger(__name__)


# What `auto` takes on a GPU: a lever becomes a default only once bench/bench_gpu.py has measured it faster on a
# card (bench/RESULTS.md). The lean loss computes what trl's does and is on wherever no tracker reads the metrics
# (1.60x the step's tokens/s on an H200). Liger measured slower (0.90x the lean step). Compile's step is 1.53x the
# lean one, but its compile time makes a train call of a round at the presets' or the paper's size slower. The
# asynchronous step ran 1.19x the lean one on an H100 (1.05x compiled) and goes with the lean loss.
GPU_DEFAULTS = {"kernels": "torch", "compile": False, "async_step": True}


@dataclass(frozen=True)
class Levers:
    """The levers one round's training uses, resolved for its device (logged for each round)."""

    token_metrics: bool
    kernels: str  # "torch" | "liger"
    compile: bool
    async_step: bool = False  # loop.model.async_step
    cuda_graphs: bool = False  # only with compile

    def describe(self) -> str:
        compiled = ("on, as CUDA graphs" if self.cuda_graphs else "on") if self.compile else "off"
        return f"token_metrics={'on' if self.token_metrics else 'off'} kernels={self.kernels} " \
               f"compile={compiled} async_step={'on' if self.async_step else 'off'}"


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None and importlib.util.find_spec("triton") is not None


def resolve_levers(train_cfg, device: torch.device, *, trackers_on: bool, checkpointing: bool) -> Levers:
    """train.token_metrics / kernels / compile with `auto` resolved: on a GPU, the fastest choice measured
    (bench/bench_gpu.py, training section; GPU_DEFAULTS); on a CPU, the step as it always ran."""
    cuda = device.type == "cuda"
    metrics = train_cfg.token_metrics
    token_metrics = trackers_on if metrics == "auto" else bool(metrics)
    kernels = train_cfg.kernels
    if kernels == "auto":
        kernels = "liger" if cuda and GPU_DEFAULTS["kernels"] == "liger" and liger_available() else "torch"
    elif kernels == "liger" and not (cuda and liger_available()):
        raise ValueError("train.kernels=liger needs a CUDA device and the liger-kernel package "
                         "(pip install liger-kernel); use train.kernels=torch or auto")
    compile_ = train_cfg.compile
    if compile_ == "auto":
        compile_ = cuda and GPU_DEFAULTS["compile"]
    if compile_ and checkpointing:
        # A checkpointed layer recomputes its forward in the backward pass outside the compiled region.
        log.info("train.compile is off for this round: gradient checkpointing is on")
        compile_ = False
    if compile_ and kernels == "liger":
        raise ValueError("train.kernels=liger and train.compile=true do not combine: torch.compile cannot trace "
                         "Liger's Triton autograd functions; set one of them to torch / false")
    async_step = train_cfg.async_step
    if async_step == "auto":
        async_step = cuda and GPU_DEFAULTS["async_step"] and not token_metrics
    elif async_step and token_metrics:
        # trl's metrics count the batch's tokens from its attention mask, which the asynchronous step drops.
        raise ValueError("train.async_step=true needs train.token_metrics off (the metrics read the attention mask "
                         "the asynchronous step drops, and read back every step); set one of them to false or auto")
    # train.cuda_graphs needs train.compile true (TrainConfig refuses it otherwise): it goes where compile goes.
    return Levers(token_metrics=token_metrics, kernels=kernels, compile=bool(compile_), async_step=bool(async_step),
                  cuda_graphs=bool(compile_) and train_cfg.cuda_graphs)


def instance_only(model, patch: Callable[[torch.nn.Module], None]) -> None:
    """Run `patch(model)`, then undo whatever it changed in the model's modeling modules (their globals and the
    attributes of the classes they define), so that only this instance keeps the patch."""
    modules = {sys.modules[cls.__module__] for cls in type(model).__mro__
               if cls.__module__.startswith("transformers.models.") and cls.__module__ in sys.modules}
    saved = {module: dict(vars(module)) for module in modules}
    classes = {cls: dict(vars(cls)) for attrs in saved.values() for cls in attrs.values()
               if isinstance(cls, type) and cls.__module__ in {m.__name__ for m in modules}}
    try:
        patch(model)
    finally:
        for module, attrs in saved.items():
            for name in [name for name in vars(module) if name not in attrs]:
                delattr(module, name)
            for name, value in attrs.items():
                if vars(module).get(name) is not value:
                    setattr(module, name, value)
        for cls, attrs in classes.items():
            for name in [name for name in vars(cls) if name not in attrs]:
                delattr(cls, name)
            for name, value in attrs.items():
                if name not in ("__dict__", "__weakref__") and vars(cls).get(name) is not value:
                    setattr(cls, name, value)


def apply_model_levers(model, levers: Levers) -> None:
    """Liger kernels and compiled layers on this model instance (before peft wraps it)."""
    if levers.kernels == "liger":
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        instance_only(model, lambda m: _apply_liger_kernel_to_instance(
            model=m, rope=False, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False))
    if levers.cuda_graphs:
        # The graphs recorded for an earlier round's model point at its weights, which this round's model does not
        # share: each would be recorded again beside it and keep its memory. Clear them; this model records its own.
        from torch._inductor.cudagraph_trees import reset_cudagraph_trees

        reset_cudagraph_trees()
    if levers.compile:
        mode = "reduce-overhead" if levers.cuda_graphs else None  # reduce-overhead: Inductor's CUDA graph trees
        for layer in decoder_layers(model):
            layer.compile(dynamic=True, mode=mode)


class LeanSFTTrainer(SFTTrainer):
    """SFTTrainer whose training loss never reads a value back from the card.

    loss = -(sum over the micro-batch's target tokens of log p(token)) / N, with N the number of target tokens
    of the whole optimizer step (transformers' `num_items_in_batch`; the micro-batch's own count when absent),
    exactly trl's "nll" loss through its fused LM head. The head is rebuilt to compute log-probabilities
    alone (trl's computes entropy and top-1 hits as well, for the metrics).
    Anything but that plain case (evaluation, returned outputs, MoE auxiliary loss, custom or smoothed losses,
    sequence parallelism) takes trl's own path.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        target = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        add_fused_lm_head(target, outputs=("log_probs",))

    def _plain(self, return_outputs: bool) -> bool:
        sequence_parallel = getattr(getattr(self.accelerator, "parallelism_config", None), "sp_enabled", False)
        return (self.model.training and not return_outputs and not self.aux_loss_enabled
                and self.compute_loss_func is None and self.label_smoother is None
                and self.args.loss_type == "nll" and not sequence_parallel)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._plain(return_outputs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = -outputs.log_probs.sum() / torch.as_tensor(tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return loss
