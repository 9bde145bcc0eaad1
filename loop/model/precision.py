"""Numerics per device, decided in one place: weight storage dtypes, the autocast dtype of matmuls, TF32.

The field's recipe for fine-tuning (and the one the paper's code used: bf16 + tf32 through the HF Trainer):
trained weights stay float32 (AdamW's master copy), matmuls run in bfloat16 under autocast, TF32 serves the
float32 matmuls that remain. Pure-bf16 weights under AdamW lose most updates at small learning rates (at lr 2e-5 an
update is ~1e-5 of the weight, below bf16's relative rounding step of 2^-8), so they are never used for training.
Frozen weights (the base under LoRA) may be stored in bfloat16, which halves their memory and costs nothing.
Scoring and sampling run under the same autocast, so a checkpoint is measured in the precision it was trained in.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from loop.config import ModelConfig, TrainConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """`weights`: dtype the base is loaded in; `compute`: autocast dtype of matmuls (None = no autocast)."""

    weights: torch.dtype
    compute: torch.dtype | None
    device_type: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.compute]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast region for forward passes (a no-op for fp32). The cast of each float32 weight is cached for
        the region's lifetime, so a decode loop inside one region reads bf16 weights after its first step."""
        if self.compute is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.compute)


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(model: ModelConfig, train: TrainConfig, device: torch.device) -> Precision:
    """The precision a run uses on `device` (see the module docstring).

    train.precision auto -> bf16 on a GPU that has it, fp16 on an older GPU, fp32 on CPU. model.dtype auto -> the
    compute dtype for a frozen LoRA base on a GPU, float32 otherwise; trained weights are float32 in every case.
    """
    if train.precision == "auto":
        if device.type == "cuda":
            compute_name = "bf16" if bf16_supported(device) else "fp16"
        else:
            compute_name = "fp32"
    else:
        compute_name = train.precision
    if compute_name == "bf16" and device.type == "cuda" and not bf16_supported(device):
        raise ValueError(f"train.precision 'bf16' but {torch.cuda.get_device_name(device)} has no bfloat16")
    if compute_name == "fp16" and device.type != "cuda":
        raise ValueError("train.precision 'fp16' needs a CUDA device (loss scaling); use fp32 or bf16 on CPU")
    compute = _AUTOCAST.get(compute_name)
    if model.lora is None or model.dtype == "float32":
        weights = torch.float32
    elif model.dtype == "auto":
        weights = compute if (compute is not None and device.type == "cuda") else torch.float32
    else:
        weights = _DTYPES[model.dtype]
    return Precision(weights=weights, compute=compute, device_type=device.type)


def enable_tf32() -> None:
    """TF32 for float32 matmuls and convolutions on Ampere and later (what `tf32=True` does in the HF Trainer)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def configure_torch(cfg) -> None:
    """The process-wide torch settings of a run (`RunConfig`): deterministic kernels (with cuBLAS's workspace set
    before CUDA starts, since cuBLAS reads it once) and the CPU thread count. The engine and every scoring shard
    call it, so that both compute alike."""
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
