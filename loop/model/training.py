"""One training round: fine-tune a fresh copy of the base model on the given examples with trl's SFTTrainer.

The dataset is tokenized here with `formatting.encode_examples` (prompt + target + EOS, target-only loss
through `completion_mask`), so training sees exactly the tokens that scoring and sampling see.
Full fine-tuning by default; LoRA through peft when `model.lora` is set.
"""

from __future__ import annotations

import tempfile
import time

import polars as pl
import torch
from datasets import Dataset, disable_progress_bars
from peft import LoraConfig
from transformers import PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from loop.config import RunConfig
from loop.model.formatting import encode_examples
from loop.model.loading import load_base
from loop.tracking import DynamicsTracker


class _EpochHook(TrainerCallback):
    def __init__(self, tracker: DynamicsTracker):
        self.tracker = tracker

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.tracker.at_epoch(model, int(round(state.epoch)))


disable_progress_bars()  # one tiny dataset per round: its map() bars are noise


def build_dataset(tokenizer, examples: pl.DataFrame, fmt: str, max_length: int) -> Dataset:
    encoded = encode_examples(tokenizer, examples, fmt)
    too_long = [i for i, e in zip(examples["id"], encoded) if len(e.input_ids) > max_length]
    if too_long:
        raise ValueError(f"examples {too_long[:5]} exceed train.max_length={max_length} tokens")
    return Dataset.from_dict({"input_ids": [e.input_ids for e in encoded],
                              "completion_mask": [e.completion_mask for e in encoded]})


def train_round(cfg: RunConfig, tokenizer, examples: pl.DataFrame, *, seed: int, device: torch.device,
                tracker: DynamicsTracker | None = None):
    """Train from the base on `examples` (columns question, solution); returns (model, train seconds)."""
    started = time.perf_counter()
    model = load_base(cfg.model, device)
    t = cfg.train
    lora = cfg.model.lora
    peft_config = None if lora is None else LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory(prefix="curation-train-") as tmp:
        args = SFTConfig(
            output_dir=tmp, num_train_epochs=t.epochs, learning_rate=t.learning_rate,
            per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation_steps,
            warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
            lr_scheduler_type=t.lr_scheduler, seed=seed, data_seed=seed, max_length=t.max_length,
            train_sampling_strategy=t.batch_order, gradient_checkpointing=t.gradient_checkpointing,
            completion_only_loss=True, packing=False, save_strategy="no", report_to="none",
            logging_strategy="no", disable_tqdm=True, use_cpu=device.type == "cpu",
            bf16=cfg.model.dtype == "bfloat16" and device.type == "cuda", dataloader_num_workers=0,
        )
        trainer = SFTTrainer(
            model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
            train_dataset=build_dataset(tokenizer, examples, cfg.model.format, t.max_length),
            callbacks=[_EpochHook(tracker)] if tracker is not None else None,
        )
        trainer.remove_callback(PrinterCallback)  # per-round metrics go to the run store, not stdout
        trainer.train()
        model = trainer.model
    model.eval()
    seconds = time.perf_counter() - started - (tracker.seconds if tracker else 0.0)
    return model, seconds
