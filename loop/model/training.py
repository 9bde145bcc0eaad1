"""One training round: fine-tune a fresh copy of the base model on the given examples with trl's SFTTrainer.

The dataset is tokenized here with `formatting.encode_for` (prompt + target, target-only loss through
`completion_mask`), so training sees exactly the tokens that scoring and sampling see. Full fine-tuning by
default; LoRA through peft when `model.lora` is set. Numerics follow `loop.model.precision`: float32 master
weights, bf16 autocast on a GPU, TF32 on. Gradient checkpointing, padding-free batches and packing come from
the config; `auto` checkpointing follows `loop.model.memory`'s estimate.
"""

from __future__ import annotations

import logging
import tempfile
import time

import polars as pl
import torch
from datasets import Dataset, disable_progress_bars
from peft import LoraConfig
from transformers import PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from loop.config import RunConfig
from loop.model.formatting import encode_for
from loop import faults
from loop.model import trackers
from loop.model.loading import load_base
from loop.model.backends import server_card_share
from loop.model.devices import workers_per_card
from loop.model.memory import ModelShape, free_for_training, needs_checkpointing, training_bytes
from loop.model.precision import Precision, enable_tf32, resolve_precision
from loop.model.async_step import asynchronous_step, trainer_arguments
from loop.model.training_levers import LeanSFTTrainer, apply_model_levers, resolve_levers

log = logging.getLogger(__name__)


class _FaultPoint(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        faults.reached("train.step")


class _EpochHook(TrainerCallback):
    def __init__(self, tracker):
        self.tracker = tracker

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.tracker.at_epoch(model, int(round(state.epoch)))


disable_progress_bars()  # one tiny dataset per round: its map() bars are noise


def build_dataset(tokenizer, examples: pl.DataFrame, model_cfg, max_length: int) -> Dataset:
    encoded = encode_for(model_cfg, tokenizer, examples)
    too_long = [i for i, e in zip(examples["id"], encoded) if len(e.input_ids) > max_length]
    if too_long:
        raise ValueError(f"examples {too_long[:5]} exceed train.max_length={max_length} tokens")
    return Dataset.from_dict({"input_ids": [e.input_ids for e in encoded],
                              "completion_mask": [e.completion_mask for e in encoded]})


def _lora_parameters(model, lora) -> int:
    """Parameters LoRA adds: r * (in + out) for every targeted linear layer."""
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in lora.target_modules:
            total += lora.r * (module.in_features + module.out_features)
    return total


def use_checkpointing(cfg: RunConfig, model, precision: Precision, longest: int, device: torch.device) -> bool:
    """train.gradient_checkpointing, with `auto` resolved against the memory of the card this process may take:
    its free memory, less what the run's other workers on the card and a vLLM server the loop starts on it will
    claim (`loop.model.memory.free_for_training`). Warns where the step would not fit even with checkpointing."""
    setting = cfg.train.gradient_checkpointing
    if setting != "auto":
        return bool(setting)
    if device.type != "cuda":
        return False
    lora = cfg.model.lora
    shape = ModelShape.of(model)
    free, total = torch.cuda.mem_get_info(device)
    share, sharers = server_card_share(cfg, device), workers_per_card(cfg.workers, cfg.share_gpus)
    budget = free_for_training(free, total, share, sharers)
    step = dict(trainable=shape.n_params if lora is None else _lora_parameters(model, lora),
                frozen_bytes_per_param=precision.weights.itemsize,
                compute_bytes=4 if precision.compute is None else 2, tokens_per_step=cfg.train.batch_size * longest)
    on = needs_checkpointing(shape, free_bytes=budget, **step)
    beside = (f" beside the vLLM server's {share:.0%} of the card" if share else "") + \
        (f" as one of {sharers} workers on it" if sharers > 1 else "")
    if on:
        log.info("gradient checkpointing on: the round would not fit the %.1f GiB free%s without it",
                 budget / 2**30, beside)
        needed = training_bytes(shape, checkpointing=True, **step)
        if needed > budget:
            log.warning("the round's step needs about %.1f GiB even with checkpointing, more than the %.1f GiB "
                        "free%s: lower train.batch_size (raising train.gradient_accumulation_steps keeps the "
                        "effective batch)%s", needed / 2**30, budget / 2**30, beside,
                        ", or workers" if sharers > 1 else "")
    return on


def _optimizer(cfg: RunConfig, device: torch.device) -> str:
    if cfg.train.optimizer != "auto":
        return cfg.train.optimizer
    return "adamw_torch_fused" if device.type == "cuda" else "adamw_torch"


def train_round(cfg: RunConfig, tokenizer, examples: pl.DataFrame, *, seed: int, device: torch.device,
                tracker=None, tracker_run: trackers.TrackerRun | None = None):
    """Train from the base on `examples` (columns question, solution); returns (model, train seconds).
    `tracker_run`: the experiment trackers' run this round's training logs go to (None = none)."""
    started = time.perf_counter()
    precision = resolve_precision(cfg.model, cfg.train, device)
    if device.type == "cuda":
        enable_tf32()
    model = load_base(cfg.model, device, precision.weights)
    t = cfg.train
    lora = cfg.model.lora
    peft_config = None if lora is None else LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM")
    dataset = build_dataset(tokenizer, examples, cfg.model, t.max_length)
    longest = max(len(ids) for ids in dataset["input_ids"])
    if t.length_bucket:  # batches are padded up to a multiple of it: the longest batch may be that long
        longest = -(-longest // t.length_bucket) * t.length_bucket
    checkpointing = use_checkpointing(cfg, model, precision, longest, device)
    levers = resolve_levers(t, device, trackers_on=tracker_run is not None, checkpointing=checkpointing)
    log.info("training step levers: %s", levers.describe())
    apply_model_levers(model, levers)
    # transformers renamed gradient_checkpointing to activation_checkpointing (5.2x); take the release's own name.
    ckpt_field = "activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__ \
        else "gradient_checkpointing"
    trackers.start_round(tracker_run)
    with tempfile.TemporaryDirectory(prefix="curation-train-") as tmp:
        args = SFTConfig(
            output_dir=tmp, num_train_epochs=t.epochs, learning_rate=t.learning_rate,
            per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation_steps,
            warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
            lr_scheduler_type=t.lr_scheduler, seed=seed, data_seed=seed,
            # Padding-free without packing refuses a max_length it would not enforce; every example was
            # checked against it before round 0 (loop.model.lengths), so there is nothing left to cut.
            max_length=None if t.padding_free and not t.packing else t.max_length,
            train_sampling_strategy=t.batch_order, **{ckpt_field: checkpointing},
            padding_free=t.padding_free, packing=t.packing, packing_strategy="bfd", pad_to_multiple_of=t.length_bucket,
            completion_only_loss=True, save_strategy="no", optim=_optimizer(cfg, device),
            **trackers.trainer_arguments(tracker_run), disable_tqdm=True, use_cpu=device.type == "cpu",
            bf16=precision.compute == torch.bfloat16, fp16=precision.compute == torch.float16,
            dataloader_num_workers=0, full_determinism=cfg.deterministic, **trainer_arguments(levers.async_step),
        )
        trainer_class = SFTTrainer if levers.token_metrics else LeanSFTTrainer
        trainer = trainer_class(
            model=model, args=args, processing_class=tokenizer, peft_config=peft_config, train_dataset=dataset,
            callbacks=[_FaultPoint()] + ([_EpochHook(tracker)] if tracker is not None else []),
        )
        trainer.remove_callback(PrinterCallback)  # per-round metrics go to the run store, not stdout
        trackers.attach(trainer, tracker_run)
        with asynchronous_step(trainer, levers.async_step, device, longest, padded=not t.padding_free):
            trainer.train()
        model = trainer.model
    model.eval()
    seconds = time.perf_counter() - started - (tracker.seconds if tracker else 0.0)
    return model, seconds
