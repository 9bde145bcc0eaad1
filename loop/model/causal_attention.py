"""Causal attention without the model's mask builder, for batches that need no mask (the asynchronous NLL scorer).

A transformers model builds its attention mask at the start of every forward (`masking_utils.create_causal_mask`).
Given no mask, it still tests the position ids for packed rows, and that test reads a value back to the host: the
host waits there for every kernel queued before, so an asynchronous caller cannot queue the next batch while the
card runs this one. The builder exits before that test for an attention implementation it has no mask function
for, and hands the layers no mask; SDPA given no mask runs its causal path (`is_causal`), the attention the batch
needs when it is padded on the right only: every real token then attends to itself and the real tokens before it.

`causal_attention(model, longest)` switches a model that runs PyTorch's SDPA to the same SDPA function registered
under its own name (`CAUSAL_SDPA`), for the duration of a block, and back. It leaves alone a model whose layers
need a mask that causality alone does not give: another attention implementation, chunked attention, or a sliding
window shorter than the block's longest sequence (a window at least as long as the sequence changes nothing).
Inside the block the model must only be given right-padded batches without an attention mask: any mask it is
given is dropped by the builder.
"""

from __future__ import annotations

import contextlib

CAUSAL_SDPA = "curation_causal_sdpa"
MASKED_LAYER_TYPES = {"full_attention", "sliding_attention"}  # the layer kinds whose mask causality can stand for


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # Not in the mask functions' registry: that absence is what makes the builder return no mask.
    if CAUSAL_SDPA not in AttentionInterface._global_mapping:
        AttentionInterface.register(CAUSAL_SDPA, sdpa_attention_forward)


def applies(model, longest: int) -> bool:
    """Whether the plain causal attention gives `model` the same attention as its own masks, for right-padded
    sequences of at most `longest` tokens."""
    hf = _base(model)
    config = getattr(hf, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if not getattr(hf, "_can_set_attn_implementation", lambda: False)():
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if not set(getattr(text, "layer_types", None) or ["full_attention"]) <= MASKED_LAYER_TYPES:
        return False
    if getattr(text, "attention_chunk_size", None):
        return False
    window = getattr(text, "sliding_window", None)
    return window is None or longest <= window


@contextlib.contextmanager
def causal_attention(model, longest: int, on: bool = True):
    """Within the block, `model` attends causally without building a mask, where `applies(model, longest)`;
    otherwise it runs unchanged. Yields whether the switch was made."""
    if not (on and applies(model, longest)):
        yield False
        return
    _register()
    hf = _base(model)
    hf.set_attn_implementation(CAUSAL_SDPA)
    try:
        yield True
    finally:
        hf.set_attn_implementation("sdpa")
