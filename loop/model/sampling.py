"""Draw completions for prompts: the `Sampler` protocol and its transformers implementations (CPU or GPU).

Two engines share one protocol and one sampling semantics (temperature, top-p nucleus, temperature 0 = greedy,
stop at EOS or after `max_new_tokens`, completions cut at `\\nDone.`):

- `DecodeLoopSampler` ("decode", the default): a hand-written decode loop over the model's own forward and a
  KV cache allocated once per batch. It prefills each distinct prompt once (its n copies share the result),
  drops finished rows from the batch, ends a batch when every row is done, and stops a row as soon as its text
  holds the stop text. On CPU, sampling with `model.generate` costs several times the model's own work.
- `TransformersSampler` ("generate"): `model.generate`, the reference and the fallback for models whose cache
  is not plain attention (linear-attention or KV-sharing layers).

`make_sampler` picks one from `SamplingConfig.engine`. A vLLM sampler lives in its own environment (vLLM and
Prefect pin incompatible fastapi versions) and implements the same protocol; the engine only calls `sample`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Sequence
from typing import Protocol

import torch
from transformers.cache_utils import Cache, DynamicLayer

from loop.config import SamplingConfig
from loop.model.formatting import STOP_TEXT, FormatName, encode_prompt

log = logging.getLogger(__name__)

ENGINES = ("decode", "generate")
# Layer kinds whose cache is keys and values per token: a cache that keeps every token serves them all, the
# masks (causal, sliding window, chunked) being built from absolute positions.
_ATTENTION_LAYERS = {"full_attention", "sliding_attention", "chunked_attention"}


class Sampler(Protocol):
    def sample(self, questions: list[str], n: int, *, seed: int) -> list[list[str]]:
        """`n` completions per question, in question order; deterministic for a given seed."""
        ...


def cut_at_stop(text: str) -> str:
    """The completion up to (not including) the stop text `\\nDone.`."""
    at = text.find(STOP_TEXT)
    return text if at < 0 else text[:at]


def make_sampler(model, tokenizer, cfg: SamplingConfig, fmt: FormatName = "plain", progress=None) -> Sampler:
    """The sampler `cfg.engine` names ("decode" or "generate"); "decode" falls back to "generate", with a
    warning, for a model it cannot serve (see `decode_loop_unsupported`)."""
    engine = cfg.engine
    if engine not in ENGINES:
        raise ValueError(f"sampling.engine must be one of {ENGINES}, got {engine!r}")
    if engine == "decode":
        reason = decode_loop_unsupported(model)
        if reason is None:
            return DecodeLoopSampler(model, tokenizer, cfg, fmt, progress)
        log.warning("sampling.engine 'decode' cannot serve this model (%s); using 'generate'", reason)
    return TransformersSampler(model, tokenizer, cfg, fmt, progress)


class TransformersSampler:
    """Batched `model.generate` with left padding; prompts of similar length share a batch."""

    def __init__(self, model, tokenizer, cfg: SamplingConfig, fmt: FormatName = "plain", progress=None):
        self.model, self.tokenizer, self.cfg, self.fmt = model, tokenizer, cfg, fmt
        self.progress = progress

    @torch.no_grad()
    def sample(self, questions: list[str], n: int, *, seed: int) -> list[list[str]]:
        if not questions:
            return []
        device = next(self.model.parameters()).device
        prompts = [encode_prompt(self.tokenizer, q, self.fmt) for q in questions]
        jobs = sorted(((len(p), qi) for qi, p in enumerate(prompts) for _ in range(n)))
        out: list[list[str]] = [[] for _ in questions]
        was_training = self.model.training
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        for batch_no, start in enumerate(range(0, len(jobs), self.cfg.batch_size)):
            batch = [qi for _, qi in jobs[start : start + self.cfg.batch_size]]
            width = max(len(prompts[qi]) for qi in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, qi in enumerate(batch):
                p = prompts[qi]
                ids[row, width - len(p) :] = torch.tensor(p)
                mask[row, width - len(p) :] = 1
            torch.manual_seed(seed * 1_000_003 + batch_no)
            greedy = self.cfg.temperature == 0.0
            generated = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                do_sample=not greedy,
                temperature=None if greedy else self.cfg.temperature,
                top_p=None if greedy else self.cfg.top_p,
                top_k=None,
                max_new_tokens=self.cfg.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
                cache_implementation=self.cfg.kv_cache,
                disable_compile=True,  # a static cache would otherwise trigger torch.compile on CUDA, per shape
            )
            texts = self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            for qi, text in zip(batch, texts):
                out[qi].append(cut_at_stop(text))
            if self.progress is not None:
                self.progress.update(len(batch))
        if was_training:
            self.model.train()
        return out


# --- the decode loop ---------------------------------------------------------------------------------------


def _hf_model(model):
    """The transformers model under a peft wrapper (whose forward passes keyword arguments through)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _layer_types(config) -> list[str]:
    """The cache kind of each decoder layer, as transformers' own caches read it from the config."""
    text = config.get_text_config(decoder=True)
    try:
        from transformers.cache_utils import get_layer_types_and_kwargs
    except ImportError:  # transformers releases before per-layer cache kinds: every layer is plain attention
        return list(getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers)
    return list(get_layer_types_and_kwargs(text)[0])


def decode_loop_unsupported(model) -> str | None:
    """Why `DecodeLoopSampler` cannot serve `model`, or None when it can."""
    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        return "a peft prompt-learning adapter brings its own cache"
    hf = _hf_model(model)
    config = getattr(hf, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "not a decoder-only transformers model"
    params = inspect.signature(hf.forward).parameters
    if "cache" not in params and "past_key_values" not in params:
        return f"{type(hf).__name__}.forward takes no cache"
    try:
        layer_types = _layer_types(config)
    except Exception as err:  # a config transformers cannot describe layer by layer
        return f"layer types unknown ({err})"
    other = sorted(set(layer_types) - _ATTENTION_LAYERS)
    return f"layers of type {other}" if other else None


class _BufferLayer(DynamicLayer):
    """One layer's keys and values in a buffer allocated once per batch.

    Attention sees only the filled length, as with `DynamicLayer` (so masks and attention cost follow the
    real length, unlike a static cache sized for the longest possible sequence), but a decode step writes one
    column instead of copying the whole cache (`DynamicLayer` concatenates). Rows are selected (finished ones
    dropped) by `reorder_cache`, which copies the filled part only.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def allocate(self, rows: int, like_keys: torch.Tensor, like_values: torch.Tensor) -> None:
        self.device = like_keys.device
        heads = like_keys.shape[1]
        self._k = like_keys.new_empty((rows, heads, self.capacity, like_keys.shape[-1]))
        self._v = like_values.new_empty((rows, like_values.shape[1], self.capacity, like_values.shape[-1]))
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.allocate(key_states.shape[0], key_states, value_states)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV buffer of {self.capacity} tokens overflows ({end})")
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self._set_length(end)
        return self.keys, self.values

    def _set_length(self, length: int) -> None:
        self.length = length
        self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def write_prompt(self, rows: slice, width: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Right-align a prefilled chunk (keys [chunk, heads, w, dim]) into `rows` at positions [width - w, width);
        zero the positions before it, which the mask hides (uninitialised memory could hold a NaN, which would
        still poison attention through its zero weight)."""
        w = keys.shape[-2]
        self._k[rows, :, width - w : width] = keys
        self._v[rows, :, width - w : width] = values
        if w < width:
            self._k[rows, :, : width - w] = 0
            self._v[rows, :, : width - w] = 0

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Row i becomes old row `beam_idx[i]`, rows past `len(beam_idx)` are dropped. Only the rows that change
        are copied, in place: filling the holes left by finished rows from the end of the batch costs a copy
        per finished row, not one of the whole cache."""
        index = beam_idx.to(self._k.device)
        if len(index) > self._k.shape[0]:
            raise ValueError(f"cannot grow a KV buffer of {self._k.shape[0]} rows to {len(index)}")
        moved = (index != torch.arange(len(index), device=index.device)).nonzero().squeeze(1)
        if len(moved):
            for buffer in (self._k, self._v):
                filled = buffer[:, :, : self.length]
                filled.index_copy_(0, moved, filled.index_select(0, index[moved]))
        self._k, self._v = self._k[: len(index)], self._v[: len(index)]
        self._set_length(self.length)


def _ids_containing(tokenizer, char: str) -> tuple[int, ...]:
    """Ids of the tokens whose text contains `char` (one batched decode of the vocabulary, once per tokenizer)."""
    try:
        return _ids_containing_cached(tokenizer, char)
    except TypeError:  # an unhashable tokenizer: decode its vocabulary every time
        return _ids_containing_cached.__wrapped__(tokenizer, char)


@functools.lru_cache(maxsize=4)
def _ids_containing_cached(tokenizer, char: str) -> tuple[int, ...]:
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return tuple(i for i, text in enumerate(texts) if char in text)


def _buffer_cache(n_layers: int, capacity: int) -> Cache:
    return Cache(layers=[_BufferLayer(capacity) for _ in range(n_layers)])


class DecodeLoopSampler:
    """Sampling through the model's forward in a hand-written decode loop (same protocol and semantics as
    `TransformersSampler`; see the module docstring for what makes it faster).

    Rows of a batch are (question, copy) pairs sorted by prompt length, at most `cfg.batch_size` of them, left
    padded. Randomness comes from one `torch.Generator` seeded with `seed`, so a call is reproducible; at
    temperature 0 one greedy completion per question is decoded and repeated `n` times.
    """

    def __init__(self, model, tokenizer, cfg: SamplingConfig, fmt: FormatName = "plain", progress=None,
                 *, prefill_tokens: int | None = None, compact_fraction: float = 0.0625):
        reason = decode_loop_unsupported(model)
        if reason is not None:
            raise ValueError(f"sampling.engine 'decode' cannot serve this model: {reason}; "
                             "use sampling.engine=generate")
        self.model, self.tokenizer, self.cfg, self.fmt, self.progress = model, tokenizer, cfg, fmt, progress
        self.device = next(model.parameters()).device
        # Prompt tokens per prefill forward: small chunks keep activations in cache on a CPU; a GPU wants wide ones.
        self.prefill_tokens = prefill_tokens or (2048 if self.device.type == "cpu" else 65536)
        self.compact_fraction = compact_fraction  # drop finished rows once they are this share of the batch
        hf = _hf_model(model)
        params = inspect.signature(hf.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._positions = "position_ids" in params
        self._keep_last = "logits_to_keep" in params
        self.n_layers = len(_layer_types(hf.config))
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos or 0)
        # Tokens whose text holds the stop text's last character: only after one of them can a row's text have
        # just come to hold the stop text.
        self._stop_last = torch.tensor(_ids_containing(tokenizer, STOP_TEXT[-1]), dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def sample(self, questions: list[str], n: int, *, seed: int) -> list[list[str]]:
        if not questions:
            return []
        prompts = [encode_prompt(self.tokenizer, q, self.fmt) for q in questions]
        greedy = self.cfg.temperature == 0.0
        copies = min(n, 1) if greedy else n  # greedy copies are all alike
        jobs = sorted((len(prompts[qi]), qi, k) for qi in range(len(questions)) for k in range(copies))
        out: list[list[str]] = [[""] * n for _ in questions]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(jobs), self.cfg.batch_size):
                batch = jobs[start : start + self.cfg.batch_size]
                ids = self._decode_batch([prompts[qi] for _, qi, _ in batch], generator)
                texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
                for (_, qi, k), text in zip(batch, texts):
                    if greedy:
                        out[qi] = [cut_at_stop(text)] * n
                    else:
                        out[qi][k] = cut_at_stop(text)
                if self.progress is not None:
                    self.progress.update(len(batch) * (n if greedy else 1))
        finally:
            if was_training:
                self.model.train()
        return out

    def _forward(self, ids, mask, positions, cache) -> torch.Tensor:
        kwargs = {"input_ids": ids, "attention_mask": mask, self._cache_kw: cache, "use_cache": True}
        if self._positions:
            kwargs["position_ids"] = positions
        if self._keep_last:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs).logits[:, -1].float()

    def _pick(self, logits: torch.Tensor, uniform: torch.Tensor | None) -> torch.Tensor:
        """The next token of each row, as `generate` draws it: temperature, then top-p, then a draw from what is
        left, by inverting the cumulative distribution at the row's own `uniform` number in [0, 1)."""
        if self.cfg.temperature == 0.0:
            return logits.argmax(-1)
        scores = logits / self.cfg.temperature
        if self.cfg.top_p < 1.0:
            # transformers' TopPLogitsWarper: drop the least likely tokens whose total mass is <= 1 - top_p,
            # always keeping the most likely one.
            sorted_scores, order = torch.sort(scores, descending=False)
            drop_sorted = sorted_scores.softmax(-1).cumsum(-1) <= 1 - self.cfg.top_p
            drop_sorted[:, -1] = False
            scores = scores.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
        probs = scores.softmax(-1)
        cdf = probs.cumsum(-1)
        drawn = torch.searchsorted(cdf, (uniform.to(cdf.dtype) * cdf[:, -1])[:, None], right=True).squeeze(1)
        # Rounding can put the draw past the last token left; it then takes the last one of positive probability.
        return torch.minimum(drawn, (probs > 0).cumsum(-1).argmax(-1))

    def _prefill(self, prompts: Sequence[list[int]], cache: Cache, width: int) -> torch.Tensor:
        """Run each distinct prompt once, in chunks, and write its keys and values into the rows of all its copies
        (rows are sorted by prompt, so copies are adjacent). Returns the last-position logits of every row."""
        distinct: list[list[int]] = []
        copies: list[int] = []
        for p in prompts:
            if distinct and distinct[-1] == p:
                copies[-1] += 1
            else:
                distinct.append(p)
                copies.append(1)
        first_row = [0]
        for c in copies:
            first_row.append(first_row[-1] + c)
        logits = []
        start = 0
        while start < len(distinct):
            stop = min(len(distinct), start + max(1, self.prefill_tokens // width))
            chunk = distinct[start:stop]
            w = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), w), self.pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), w), dtype=torch.long)
            for row, p in enumerate(chunk):
                ids[row, w - len(p) :] = torch.tensor(p)
                mask[row, w - len(p) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            part = _buffer_cache(self.n_layers, w)
            chunk_logits = self._forward(ids.to(self.device), mask.to(self.device), positions.to(self.device), part)
            repeats = torch.tensor(copies[start:stop], device=self.device)
            rows = slice(first_row[start], first_row[stop])
            for big, small in zip(cache.layers, part.layers):
                if not big.is_initialized:
                    big.allocate(len(prompts), small.keys, small.values)
                big.write_prompt(rows, width, small.keys.repeat_interleave(repeats, 0),
                                 small.values.repeat_interleave(repeats, 0))
            logits.append(chunk_logits.repeat_interleave(repeats, 0))
            start = stop
        for layer in cache.layers:
            layer._set_length(width)
        return torch.cat(logits)

    def _stops_in_text(self, tokens: torch.Tensor, rows: list[int], t: int) -> list[bool]:
        texts = self.tokenizer.batch_decode(tokens[rows, : t + 1].tolist(), skip_special_tokens=True)
        return [STOP_TEXT in text for text in texts]

    def _decode_batch(self, prompts: list[list[int]], generator: torch.Generator) -> list[list[int]]:
        """Generated token ids of each row (EOS included when drawn), for left-padded `prompts` sorted by length."""
        max_new = self.cfg.max_new_tokens
        rows = len(prompts)
        width = max(len(p) for p in prompts)
        cache = _buffer_cache(self.n_layers, width + max_new - 1)
        logits = self._prefill(prompts, cache, width)
        dev = self.device
        lengths = torch.tensor([len(p) for p in prompts], device=dev)
        # Attention mask of every row over the whole buffer: its left padding hidden, every later position seen.
        mask = torch.arange(width + max_new, device=dev)[None, :] >= (width - lengths)[:, None]
        positions = lengths.clone()  # the position of the token fed at the next step
        tokens = torch.full((rows, max_new), self.pad, dtype=torch.long, device=dev)
        n_new = torch.full((rows,), max_new, dtype=torch.long, device=dev)
        row_ids = torch.arange(rows, device=dev)  # batch row of each row still in the cache
        alive = torch.ones(rows, dtype=torch.bool, device=dev)
        greedy = self.cfg.temperature == 0.0
        for t in range(max_new):
            # One number per batch row and step, whatever rows are still in the cache: a row's draws depend on the
            # seed and its place in the batch only, not on when other rows finished.
            uniform = None if greedy else torch.rand(rows, generator=generator, device=dev)[row_ids]
            tok = self._pick(logits, uniform)
            tokens[row_ids, t] = torch.where(alive, tok, self.pad)
            done = alive & (tok == self.eos) if self.eos is not None else torch.zeros_like(alive)
            maybe_stop = alive & ~done & torch.isin(tok, self._stop_last)
            if maybe_stop.any():
                candidates = maybe_stop.nonzero().squeeze(1)
                hits = self._stops_in_text(tokens, row_ids[candidates].tolist(), t)
                done[candidates[torch.tensor(hits, device=dev)]] = True
            n_new[row_ids[done]] = t + 1
            alive &= ~done
            n_alive = int(alive.sum())
            if n_alive == 0 or t == max_new - 1:
                break
            if len(alive) - n_alive >= max(1, self.compact_fraction * len(alive)):
                # Drop finished rows: the last live rows move into the holes the finished ones left in front.
                order = torch.arange(n_alive, device=dev)
                holes = (~alive[:n_alive]).nonzero().squeeze(1)
                order[holes] = alive[n_alive:].nonzero().squeeze(1) + n_alive
                cache.reorder_cache(order)
                row_ids, tok, mask, positions = row_ids[order], tok[order], mask[order], positions[order]
                alive = alive[order]
            length = width + t
            logits = self._forward(tok[:, None], mask[:, : length + 1], positions[:, None], cache)
            positions += 1
        return [row[:k] for row, k in zip(tokens.tolist(), n_new.tolist())]
