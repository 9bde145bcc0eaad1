"""The asynchronous step (`train.async_step`): the host queues a training step's work without waiting on the GPU.

On a card, the step of a small model waits on the host (bench/RESULTS.md, issue 22), and every time the host reads
a value back from the card it drains the card's queue and starts the next kernels from empty. A lean step
(`train.token_metrics` off) still read back about ten times a step (the profiles of 2026-12-07 count 10.5
synchronisations per 32-example step, 12 ms of waiting in a 91 ms compiled step). Traced on a CPU with a dispatch
mode that logs every read-back op (`_local_scalar_dense`, `nonzero`), two reads per micro-batch come from the
trainer and two from the model; the batch's uploads from pageable memory add one wait per tensor on a card:

- transformers' Trainer tests each micro-batch's loss for NaN and infinity (`logging_nan_inf_filter`), which only
  decides what the logged loss adds up: off, a NaN loss is logged as NaN instead of being replaced;
- transformers' mask builder reads the attention mask (`padding_mask.all()`, twice) to decide whether it can hand
  the kernel its own causal mask. trl's collator pads on the right, so every real token attends only to real
  tokens before it under the plain causal mask: the outputs at real tokens are the same, the padded positions
  carry label -100 and add nothing to the loss or its gradients. `CausalRightPadded` checks each batch's mask on
  the host, where the check is free, and drops it when the batch is right-padded. Without a mask the model reads
  once instead (its test for packed rows in the position ids), and the kernel takes its causal path, which needs
  no mask in memory. Given no mask the model's builder still read back once, testing the position ids for packed
  rows; where the batches are padded (not `train.padding_free`) and causality is the model's whole mask, the
  builder is kept out (`loop.model.causal_attention`), and the collator refuses a batch that is not right-padded;
- the batch's tensors are copied to the card from pinned memory without a wait (accelerate's `non_blocking`).

Without a mask the attention is the plain causal one, which torch's FlashAttention kernel runs; cuDNN's attention
is left out of the step where a card would pick it. Measured on one H100 (2026-12-07, bench `levers-async`,
Qwen2.5-0.5B shape, 32 examples a step) with cuDNN left in: the causal path halved the attention kernels' time
(6.9 to 3.6 ms a step) and the read-backs (10.5 to 5.2 a step), yet the host's time per step rose from 149 to
243 ms and the step ran 0.69x the lean one (0.98x compiled). The likely cause, not profiled on the host: cuDNN
builds an execution graph on the host for each new shape of its causal attention, and length-grouped batches bring
a new length almost every step (the masked path the lean step took showed no such cost).

With FlashAttention in its place, in the same kind of run: the lean step 53.7k tokens/s, the asynchronous step
64.2k (1.19x, 19.2% MFU), host time per step 157 to 151 ms, read-backs 10.5 to 5.2 a step; with compiled layers
82.8k and 87.3k (1.05x, 26.2% MFU), with the mask builder still in. Without the builder, on one H100 that
evening: 4.2 read-backs a step instead of 5.2, the lean step 51.9k and the asynchronous one 52.4k (1.01x), compiled
61.4k and 79.5k (1.30x, 23.8% MFU): its gain varies from run to run, and the host stays the limit (kernel
launches). On a GPU `auto` turns it on wherever `train.token_metrics` is off.

So a micro-batch reads nothing back where it read four times on a CPU (tests/integration/test_async_step.py counts
them; one, the builder's, where the builder stays). On a card trl's fused head also gathers the target positions
with a boolean mask, whose size the host must know: that read stays. What is trained is unchanged
(tests/integration/test_async_step.py: the same weights within float32 rounding on a CPU;
tests/gpu/test_training_levers_cuda.py: the same loss curve within bf16 noise, with and without compiled layers,
passed on one H100 on 2026-12-07, and again that evening with the builder kept out).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from loop.model.causal_attention import causal_attention


def right_padded(mask: torch.Tensor) -> bool:
    """True when every row of a 0/1 attention mask is a run of ones followed only by zeros (or all ones)."""
    if mask.dim() != 2:
        return False
    ones = mask.bool()
    return bool(ones[:, 0].all()) and bool((ones[:, 1:] <= ones[:, :-1]).all())


class CausalRightPadded:
    """A collator wrapper: the inner collator's batch, without its attention mask where the mask is right padding
    alone (so the model runs its plain causal attention, with no mask to read back). Batches with position ids,
    packed rows or any other mask pass unchanged, unless `strict`: then the model's mask builder is kept out
    (`loop.model.causal_attention`), would drop their mask, and such a batch is refused instead."""

    def __init__(self, inner, strict: bool = False):
        self.inner = inner
        self.strict = strict

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        mask = batch.get("attention_mask")
        if mask is not None and "position_ids" not in batch and torch.is_tensor(mask) and right_padded(mask):
            return {key: value for key, value in batch.items() if key != "attention_mask"}
        if self.strict and (mask is not None or "position_ids" in batch):
            raise ValueError("the asynchronous step attends causally without the model's mask builder, which needs "
                             "right-padded batches: this batch has "
                             + ("position ids" if "position_ids" in batch else "a mask that is not right padding"))
        return batch


def attention_kernels(on: bool, device: torch.device):
    """Where the asynchronous step runs on a card, the attention kernels it may use: FlashAttention (the causal
    path), memory-efficient attention and the math kernel, not cuDNN's (a host-side graph build per new length)."""
    if not on or device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def trainer_arguments(on: bool) -> dict:
    """The TrainingArguments the asynchronous step sets (none where it is off)."""
    if not on:
        return {}
    return {"logging_nan_inf_filter": False, "dataloader_pin_memory": True,
            "accelerator_config": {"non_blocking": True}}


@contextlib.contextmanager
def asynchronous_step(trainer, on: bool, device: torch.device, longest: int, padded: bool):
    """Around `trainer.train()`, what the asynchronous step changes besides its `trainer_arguments`: the collator
    drops right-padding masks (`CausalRightPadded`), the card keeps cuDNN's attention out (`attention_kernels`),
    and where batches are `padded` (not padding-free: there the position ids are how the model tells its rows
    apart) the model's mask builder is kept out for sequences of up to `longest` tokens, the collator then
    refusing a batch that is not right-padded. Nothing changes where `on` is False; all is undone after."""
    if not on:
        yield
        return
    inner = trainer.data_collator
    collator = trainer.data_collator = CausalRightPadded(inner)
    try:
        with attention_kernels(True, device), causal_attention(trainer.model, longest, on=padded) as switched:
            collator.strict = switched  # only the switch knows whether it applied to this model
            yield
    finally:
        trainer.data_collator = inner
