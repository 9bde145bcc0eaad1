"""Load the base model and tokenizer: the embedded checkpoint shipped in loop/assets, or any HF causal LM.

Hub names go through `from_pretrained` as usual (users with network access); offline, a local folder works.
The base is read from disk once per process and copied for each round, since every round retrains from it.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from loop.config import ModelConfig

EMBEDDED_BASE = Path(__file__).parents[1] / "assets" / "embedded-base"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_path(name_or_path: str) -> str:
    return str(EMBEDDED_BASE) if name_or_path == "embedded" else name_or_path


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(device)


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, dtype: str) -> PreTrainedModel:
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[dtype])
    except OSError as err:
        raise OSError(
            f"could not load model {path!r}: {err}. Offline (HF_HUB_OFFLINE=1), give a local folder in model.name_or_path."
        ) from err
    model.eval()
    return model


def load_tokenizer(cfg: ModelConfig):
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(cfg.name_or_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(cfg: ModelConfig, device: torch.device) -> PreTrainedModel:
    """A fresh, trainable copy of the base model on `device`."""
    model = copy.deepcopy(_load_cached(resolve_path(cfg.name_or_path), cfg.dtype))
    return model.to(device)
