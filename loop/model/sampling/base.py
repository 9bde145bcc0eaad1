"""What every sampler shares: the `Sampler` protocol, the stop text, and which models the decode loop can serve."""

from __future__ import annotations

import functools
import inspect
from typing import Protocol

import torch

from loop.model.formatting import STOP_TEXT

# Layer kinds whose cache is keys and values per token.
_ATTENTION_LAYERS = {"full_attention", "sliding_attention", "chunked_attention"}


class Sampler(Protocol):
    def sample(self, questions: list[str], n: int, *, seed: int, answer_prefix: str = "") -> list[list[str]]:
        """`n` completions per question, in question order; deterministic for a given seed. With `answer_prefix`
        the answer is forced to begin with it (`encode_prompt`); completions continue after it, without it."""
        ...


def cut_at_stop(text: str) -> str:
    """The completion up to (not including) the stop text `\\nDone.`."""
    at = text.find(STOP_TEXT)
    return text if at < 0 else text[:at]


def hf_model(model):
    """The transformers model under a peft wrapper (whose forward passes keyword arguments through)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def layer_types(config) -> list[str]:
    """The cache kind of each decoder layer, as transformers' own caches read it from the config."""
    text = config.get_text_config(decoder=True)
    try:
        from transformers.cache_utils import get_layer_types_and_kwargs
    except ImportError:  # transformers releases before per-layer cache kinds: every layer is plain attention
        return list(getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers)
    return list(get_layer_types_and_kwargs(text)[0])


def decode_loop_unsupported(model, capacity: int | None = None) -> str | None:
    """Why `DecodeLoopSampler` cannot serve `model` (for sequences of `capacity` tokens), or None when it can.

    The loop needs plain attention layers whose keys and values it can hold in its own buffer, and an attention
    it can run with its own mask: no soft-capped attention logits, no attention sinks, no sliding window shorter
    than a sequence.
    """
    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        return "a peft prompt-learning adapter brings its own cache"
    hf = hf_model(model)
    config = getattr(hf, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "not a decoder-only transformers model"
    params = inspect.signature(hf.forward).parameters
    if "cache" not in params and "past_key_values" not in params:
        return f"{type(hf).__name__}.forward takes no cache"
    try:
        kinds = layer_types(config)
    except Exception as err:  # a config transformers cannot describe layer by layer
        return f"layer types unknown ({err})"
    other = sorted(set(kinds) - _ATTENTION_LAYERS)
    if other:
        return f"layers of type {other}"
    text = config.get_text_config(decoder=True)
    if getattr(text, "attn_logit_softcapping", None):
        return "soft-capped attention logits"
    if any(name.endswith(".sinks") for name, _ in hf.named_parameters()):
        return "attention sinks"
    window = min((w for w in (getattr(text, "sliding_window", None), getattr(text, "attention_chunk_size", None))
                  if w), default=None)
    if window is not None and {"sliding_attention", "chunked_attention"} & set(kinds) and capacity \
            and window < capacity:
        return f"an attention window of {window} tokens, shorter than a sequence ({capacity})"
    return None


def token_table(size: int, ids, device) -> torch.Tensor:
    """A boolean lookup over a vocabulary of `size` ids (the model's, which may exceed the tokenizer's), True at
    `ids`."""
    table = torch.zeros(max(size, 1), dtype=torch.bool)
    table[[i for i in ids if i is not None and 0 <= i < len(table)]] = True
    return table.to(device)


def ids_containing(tokenizer, char: str) -> tuple[int, ...]:
    """Ids of the tokens whose text contains `char` (one batched decode of the vocabulary, once per tokenizer)."""
    try:
        return _ids_containing_cached(tokenizer, char)
    except TypeError:  # an unhashable tokenizer: decode its vocabulary every time
        return _ids_containing_cached.__wrapped__(tokenizer, char)


@functools.lru_cache(maxsize=4)
def _ids_containing_cached(tokenizer, char: str) -> tuple[int, ...]:
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return tuple(i for i, text in enumerate(texts) if char in text)
