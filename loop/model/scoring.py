"""Teacher-forced negative log-likelihood per example, in the training format: the memorization quantity.

`mean_nll` scores tokens [score_from, len) of each sequence: with `score_from` = the prompt length it is the mean
target NLL (= log PPL of the target); with `score_from` = 1, the NLL of the whole text after the first token
(reference-model perplexity). It computes the way a large vocabulary needs:
- sequences sorted by length and batched under a token budget (padding included), so little work is padding;
- the backbone runs once per batch; the LM head runs only at the positions that predict a scored token, in
  chunks of positions, so the full-vocabulary logits of every position never exist (at MATH lengths and a 150k
  vocabulary they would take tens of GB in float32);
- log-softmax in float32 over each chunk's logits, whatever dtype the matmuls ran in;
- or, with `head_kernel="trl"`, trl's tiled log-probability kernel (`trl.kernels.ChunkedLogProbFunction`: the
  same float32 log-sum-exp folded tile by tile in Triton, so no float32 logits are written at all);
- on CUDA out of memory, a batch is halved and retried (`loop.model.oom`);
- asynchronously on a card (`asynchronous`, `dynamics.nll_async`): the host queues every batch without waiting
  on the card. Batches are uploaded from pinned memory without a wait; the attention mask, which `_pad` makes of
  right padding alone, is left out, and where causality is the whole mask the model's mask builder is kept out
  too (`loop.model.causal_attention`: given no mask it would still read back once per forward, testing the
  position ids for packed rows, and the host would wait there for the card to finish the batch before). The
  attention takes the plain causal path (FlashAttention, not cuDNN's per-length graphs: `loop.model.async_step`);
  the per-sequence means stay on the card until the call's end, where they are read back once. Every real token
  attends to the same tokens as under the mask, and padded positions are never scored, so the NLL is the same up
  to the kernels' summation order. Measured (bench/RESULTS.md): on one H200 (2026-12-07), with the builder still
  in, neutral (0.98x the masked call on equal-length batches), synchronisations down from 16 to 3; on one H100 that
  evening, without the builder, no time left waiting (88 ms a call before) and 1.14x the masked call on batches of
  mixed lengths, the loop's case, but no faster than with the builder: the host then waits in kernel launches.
Models that post-process logits are handled (final soft-capping, logit scales); the first call on a model checks
the fast path against the model's own full forward and falls back to it, logged, when they disagree.

`mean_nll_reference` is the definition spelled out: one example per forward, full logits, float32.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from loop import faults
from loop.model.async_step import attention_kernels
from loop.model.causal_attention import causal_attention
from loop.model.compiled_layers import compiled_layers
from loop.model.nll_graphs import BackboneGraphs
from loop.model.oom import halve_on_oom

log = logging.getLogger(__name__)

HEAD_CHUNK_BYTES = 1 << 28  # float32 logits of one head chunk: 256 MiB
TRL_VOCAB_TILE = 32768  # vocabulary columns per tile of trl's kernel (trl's own SFT setting)
HEAD_KERNELS = ("auto", "chunked", "trl")


def resolve_head_kernel(kernel: str, device: torch.device) -> str:
    """`auto`: trl's Triton kernel on a GPU, the loop's chunked head elsewhere.

    Measured on one H200 (bench/bench_gpu.py, nll section, Qwen2.5-0.5B shape, 2026-12-06): trl's kernel scores
    1.31x the chunked head's tokens/s with bf16 weights and 1.28x under fp32 weights with bf16 autocast. On a CPU
    trl's kernel is plain torch ops, so the chunked head stays (and the CPU numbers do not move)."""
    if kernel not in HEAD_KERNELS:
        raise ValueError(f"head_kernel must be one of {HEAD_KERNELS}, not {kernel!r}")
    if kernel == "auto":
        return "trl" if device.type == "cuda" else "chunked"
    return kernel


def _hf(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _logit_transform(config):
    """(scale, softcap) that the model applies to its head's output (1.0, None for most models)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    scale = getattr(text, "logit_scale", None)
    if scale is None:
        scale = getattr(text, "lm_head_multiplier", None)
    if scale is None and getattr(text, "logits_scaling", None):
        scale = 1.0 / text.logits_scaling
    return float(scale) if scale is not None else 1.0, getattr(text, "final_logit_softcapping", None)


class _Head:
    """The backbone and LM head of a causal LM, and how to score positions with them."""

    def __init__(self, model):
        hf = _hf(model)
        self.model = model
        self.backbone = getattr(hf, hf.base_model_prefix, None)
        self.head = hf.get_output_embeddings()
        self.scale, self.softcap = _logit_transform(hf.config)
        self.fast = self.backbone is not None and self.backbone is not hf and self.head is not None
        vocab = self.head.weight.shape[0] if self.head is not None else hf.config.get_text_config().vocab_size
        self.chunk = max(16, HEAD_CHUNK_BYTES // (4 * vocab))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits of hidden states [n, d], as the model's forward computes them."""
        out = self.head(hidden).float()
        if self.scale != 1.0:
            out = out * self.scale
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out

    def token_nll(self, hidden: torch.Tensor, labels: torch.Tensor, kernel: str = "chunked") -> torch.Tensor:
        """NLL of `labels` [n] given hidden states [n, d], the head applied chunk by chunk (`kernel` "chunked")
        or through trl's tiled kernel ("trl")."""
        if kernel == "trl" and hidden.shape[0]:
            from trl.kernels import ChunkedLogProbFunction

            log_probs = ChunkedLogProbFunction.apply(hidden, self.head.weight, self.head.bias, labels, 1.0,
                                                     TRL_VOCAB_TILE, self.softcap, self.scale, ())[0]
            return -log_probs
        parts = []
        for start in range(0, hidden.shape[0], self.chunk):
            logits = self.logits(hidden[start : start + self.chunk])
            parts.append(torch.logsumexp(logits, -1) - logits.gather(1, labels[start : start + self.chunk, None])[:, 0])
        return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def _upload(tensor: torch.Tensor, device, asynchronous: bool) -> torch.Tensor:
    """`tensor` on `device`; asynchronously from pinned memory where that is a card."""
    if asynchronous and torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _pad(sequences: Sequence[list[int]], pad_id: int, device,
         asynchronous: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids padded on the right to the longest sequence, and the 0/1 mask of real tokens, or None for the
    asynchronous scorer, which runs without it (built in numpy at once: a loop over rows cost the host about 14 ms
    a batch of 218 x 300 tokens, 2026-12-07, this project's CPU)."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    real = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
    ids = np.full(real.shape, pad_id, dtype=np.int64)
    ids[real] = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
    mask = None if asynchronous else _upload(torch.from_numpy(real.astype(np.int64)), device, asynchronous)
    return _upload(torch.from_numpy(ids), device, asynchronous), mask


def _targets(sequences: Sequence[list[int]], score_from: Sequence[int], device, asynchronous: bool = False):
    """(row, position) of every hidden state that predicts a scored token, and each row's count: row i predicts
    its tokens [max(score_from_i, 1), len_i) from positions [max(score_from_i, 1) - 1, len_i - 1)."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    first = np.maximum(np.asarray(score_from, dtype=np.int64), 1)
    counts = np.maximum(lengths - first, 0)
    rows = np.repeat(np.arange(len(sequences)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)  # where each row's run begins in the flat arrays
    positions = np.arange(int(counts.sum())) - starts + np.repeat(first - 1, counts)
    return (_upload(torch.from_numpy(rows), device, asynchronous),
            _upload(torch.from_numpy(positions), device, asynchronous), counts.tolist())


def _batch_nll(head: _Head, sequences, score_from, pad_id: int, device, use_fast: bool,
               kernel: str = "chunked", asynchronous: bool = False, graphs=None) -> torch.Tensor:
    """Mean NLL of each sequence's scored tokens, float64 on `device` (not read back). `graphs`: the call's
    `loop.model.nll_graphs.BackboneGraphs`, where the backbone runs as CUDA graphs."""
    ids, mask = _pad(sequences, pad_id, device, asynchronous)
    rows, positions, counts = _targets(sequences, score_from, device, asynchronous)
    labels = ids[rows, positions + 1]
    # `_pad` pads on the right, so the mask is right padding alone: without it (asynchronous) the model runs its
    # causal attention, which gives every real token the same inputs (see the module docstring).
    # No key/value cache: a scoring pass is never continued, and a cache's per-layer state would also make compiled
    # layers recompile (dynamo guards on it).
    if use_fast:
        hidden = graphs.hidden(ids) if graphs is not None else None
        if hidden is None:
            hidden = head.backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        token_nll = head.token_nll(hidden[rows, positions], labels, kernel)  # gathered before any next replay
    else:  # the model's own forward; its logits stay in the matmul dtype until gathered
        logits = head.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        token_nll = _gathered_nll(logits, rows, positions, labels, head.chunk)
    sums = torch.zeros(len(sequences), dtype=torch.float64, device=device).index_add_(0, rows, token_nll.double())
    counts_t = _upload(torch.tensor(counts, dtype=torch.float64), device, asynchronous).clamp(min=1)
    return sums / counts_t


def _gathered_nll(logits, rows, positions, labels, chunk: int) -> torch.Tensor:
    parts = []
    for s in range(0, rows.numel(), chunk):
        part = logits[rows[s : s + chunk], positions[s : s + chunk]].float()
        parts.append(torch.logsumexp(part, -1) - part.gather(1, labels[s : s + chunk, None])[:, 0])
    return torch.cat(parts) if parts else logits.new_zeros(0, dtype=torch.float32)


def _fast_path_agrees(head: _Head, pad_id: int, device) -> bool:
    """Whether backbone + head reproduce the model's own logits (checked once per model, kept on it)."""
    hf = _hf(head.model)
    if not hasattr(hf, "_curation_fast_nll"):
        ids, mask = _pad([list(range(3, 15))], pad_id, device)
        full = head.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[0].float()
        fast = head.logits(head.backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[0])
        agree = bool(torch.allclose(fast, full, rtol=1e-3, atol=1e-3 * max(1.0, float(full.abs().max()))))
        if not agree:
            log.warning("%s: backbone + LM head differ from the model's forward; scoring with the full forward",
                        type(hf).__name__)
        hf._curation_fast_nll = agree
    return hf._curation_fast_nll


def batches_by_tokens(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length: at most `max_rows` rows and `max_tokens` padded tokens each
    (a sequence longer than the budget gets a batch of its own)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches, current = [], []
    for i in order:
        # Sorted ascending: the row being added is the longest, so it sets the padded width.
        if current and (len(current) >= max_rows or (len(current) + 1) * lengths[i] > max_tokens):
            batches.append(np.asarray(current))
            current = []
        current.append(i)
    if current:
        batches.append(np.asarray(current))
    return batches


def default_batch_tokens(device: torch.device) -> int:
    return 65536 if device.type == "cuda" else 16384


def resolve_asynchronous(setting: bool | str, device: torch.device) -> bool:
    """`dynamics.nll_async`: `auto` is on on a card and off on a CPU, where the scorer never waited on a device and
    the embedded default's figures stay as they were (the masked attention sums in its own order)."""
    if setting == "auto":
        return device.type == "cuda"
    if not isinstance(setting, bool):
        raise ValueError(f"nll_async must be true, false or auto, not {setting!r}")
    return setting


@torch.no_grad()
def mean_nll(
    model, sequences: Sequence[list[int]], score_from: Sequence[int], *, pad_id: int, batch_size: int = 64,
    batch_tokens: int | None = None, autocast: contextlib.AbstractContextManager | None = None,
    head_kernel: str = "auto", asynchronous: bool | str = "auto", mask_builder: bool = False,
    cuda_graphs: bool = False, compile_layers: bool = False,
) -> np.ndarray:
    """Mean NLL (nats per token) over tokens [score_from[i], len) of each sequence, in input order.

    A batch holds at most `batch_size` sequences and `batch_tokens` tokens (padding included; default 16k on
    CPU, 64k on a GPU). `autocast`: the region the forward passes run in (the run's precision).
    `head_kernel`: how the LM head and log-softmax are computed (`resolve_head_kernel`). `asynchronous`: whether
    the host queues all batches without waiting on the device (`resolve_asynchronous`; the module docstring).
    `mask_builder`: let the model's mask builder run in the asynchronous scorer, as it did until the evening of
    2026-12-07 (for the bench's comparison; it reads back once per forward). `cuda_graphs`: the backbone's forward
    replayed as CUDA graphs (`loop.model.nll_graphs`), where the scorer is asynchronous on a card without the mask
    builder; elsewhere it is ignored. `compile_layers`: the decoder layers compiled for this call
    (`loop.model.compiled_layers`).
    """
    if len(sequences) != len(score_from):
        raise ValueError("one score_from per sequence is needed")
    out = np.empty(len(sequences))
    if not sequences:
        return out
    device = next(model.parameters()).device
    kernel = resolve_head_kernel(head_kernel, device)
    asynchronous = resolve_asynchronous(asynchronous, device)
    budget = batch_tokens or default_batch_tokens(device)
    was_training = model.training
    model.eval()
    head = _Head(model)
    done: list[tuple[np.ndarray, torch.Tensor]] = []  # each batch's indices and its means, still on the device
    try:
        with autocast or contextlib.nullcontext(), attention_kernels(asynchronous, device):
            use_fast = head.fast and _fast_path_agrees(head, pad_id, device)

            def run(part: np.ndarray) -> None:
                faults.reached("nll.batch")
                means = _batch_nll(head, [sequences[i] for i in part], [score_from[i] for i in part],
                                   pad_id, device, use_fast, kernel, asynchronous, graphs)
                if asynchronous:
                    done.append((part, means))
                else:
                    out[part] = means.cpu().numpy()

            lengths = [len(s) for s in sequences]
            # The asynchronous scorer gives no mask: where causality is the whole mask, the model is also kept from
            # building one, whose test for packed rows would make the host wait once per forward.
            with causal_attention(model, max(lengths), on=asynchronous and not mask_builder) as causal, \
                    compiled_layers(model, on=compile_layers):
                graphs = None
                if cuda_graphs and causal and use_fast and device.type == "cuda":
                    graphs = BackboneGraphs(head.backbone, batch_size, pad_id)
                for idx in batches_by_tokens(lengths, batch_size, budget):
                    halve_on_oom(run, idx, what="teacher-forced NLL")
        if done:  # one read-back for the whole call
            values = torch.cat([means for _, means in done]).cpu().numpy()
            out[np.concatenate([part for part, _ in done])] = values
    finally:
        if was_training:
            model.train()
    return out


@torch.no_grad()
def mean_nll_reference(model, sequences: Sequence[list[int]], score_from: Sequence[int]) -> np.ndarray:
    """The definition, plainly: for each sequence alone, full logits in float32, mean NLL over [score_from, len).

    NLL_i = -(1/|T_i|) sum_{t in T_i} log softmax(logits_{t-1})[x_t],  T_i = {max(score_from_i, 1), ..., len_i - 1}.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(sequences))
    for i, (seq, start) in enumerate(zip(sequences, score_from)):
        ids = torch.tensor([seq], device=device)
        logits = model(input_ids=ids).logits[0].float()
        first = max(start, 1)
        nll = F.cross_entropy(logits[first - 1 : len(seq) - 1], ids[0, first:], reduction="mean")
        out[i] = float(nll) if len(seq) > first else math.nan
    if was_training:
        model.train()
    return out
