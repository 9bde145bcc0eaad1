"""A causal LM's decoder layers, found by shape rather than by attribute name (`model.model.layers` in Llama-like
models, `transformer.h` in GPT-2, under `base_model.model` in PEFT): the levers that compile or patch them
(`loop.model.training_levers`, `loop.model.compiled_layers`) work on any architecture transformers loads."""

from __future__ import annotations

import torch


def decoder_layer_list(model) -> torch.nn.ModuleList | None:
    """The ModuleList holding a causal LM's repeated blocks (the longest whose members are all one class)."""
    best: torch.nn.ModuleList | None = None
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > (len(best) if best is not None else 0) \
                and len({type(m) for m in module}) == 1:
            best = module
    return best


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated blocks of a causal LM (`decoder_layer_list`'s members)."""
    return list(decoder_layer_list(model) or [])
