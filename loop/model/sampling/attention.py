"""The attention of one decode step over the sampler's own key/value buffer.

transformers' sdpa attention expands grouped key/value heads to one per query head whenever a mask is given
(`repeat_kv`): at decode time that copies the whole cache 7 times per layer for Qwen2.5 (14 query heads, 2 key/
value heads), which costs more than the step itself. Here the query heads of a group are laid out as the query
length of one key/value head, `[batch, kv_heads, group, dim]`, so one scaled-dot-product call reads each cached
key and value once, under the same boolean mask broadcast over the group. The function is registered in
transformers' AttentionInterface and switched on for decode steps only.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from loop.model.sampling.base import hf_model

DECODE_ATTENTION = "curation_loop_decode"


def decode_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs):
    """query [B, Hq, Q, D], key/value [B, Hkv, C, D], mask bool [B, 1, Q, C] (True = attend).
    Returns ([B, Q, Hq, D], None) as transformers' attention functions do."""
    b, hq, q, d = query.shape
    hkv = key.shape[1]
    if q == 1 and hq != hkv:
        grouped = query.reshape(b, hkv, hq // hkv, d)
        out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask, scale=scaling)
        out = out.reshape(b, hq, 1, d)
    else:
        if hq != hkv:
            key = key.repeat_interleave(hq // hkv, dim=1)
            value = value.repeat_interleave(hq // hkv, dim=1)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(DECODE_ATTENTION, decode_attention)


@contextlib.contextmanager
def decode_attention_on(model):
    """Route the model's attention layers through `decode_attention` inside the block."""
    config = hf_model(model).config
    previous = config._attn_implementation
    config._attn_implementation = DECODE_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous
