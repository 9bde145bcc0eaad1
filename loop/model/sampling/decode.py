"""`DecodeLoopSampler`: completions through the model's own forward in a decode loop that keeps its batch full.

How it differs from `generate`, and why:
- **One buffer, used as a ring.** Keys and values of every row live in one buffer per layer of `C = longest prompt
  + max_new_tokens` columns. Each step writes the fed token of every row into the same column, the next one round
  the ring; a boolean mask says which columns belong to which row. Keys carry their rotary position already and
  attention does not care about column order, so a row's columns need not be contiguous or start at 0, and a
  row never lives long enough to meet its own first column again.
- **Finished rows are refilled.** Every `check_every` steps the loop looks at which rows ended (EOS, the stop
  text `\\nDone.`, or max_new_tokens) and admits waiting completions into their slots: a new prompt's keys and
  values are written into the columns just behind the write position. The batch stays full until the work runs
  out; then the live rows are packed into the first half of the batch, repeatedly.
- **Each prompt is prefilled once** for all its copies; the copies share its keys and values.
- **The stop text is looked for in the last few tokens only**, of the rows that drew a token holding its last
  character, at each check (a row may run on a few tokens past its stop; its text is cut there anyway).
- **Draws belong to completions** (`draws.uniforms`): a completion is the same whatever batch it shares.
- **On CUDA each decode step is one CUDA graph** (`sampling.cuda_graphs`): the step's few hundred kernel launches
  replay from one call, and its attention reads each grouped key/value head once (`attention.py`).
- **Out of memory** halves the batch and resumes with the completions not yet finished (`loop.model.oom`).

Greedy decoding (temperature 0) draws one completion per question and repeats it `n` times.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import deque
from dataclasses import dataclass, fields

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from loop.config import SamplingConfig
from loop.model.formatting import STOP_TEXT, FormatName, encode_prompt
from loop.model.oom import is_oom, shrink_on_oom
from loop.model.sampling.attention import decode_attention_on
from loop.model.sampling.base import (
    cut_at_stop,
    decode_loop_unsupported,
    hf_model,
    ids_containing,
    layer_types,
    token_table,
)
from loop.model.sampling import draws
from loop.model.sampling.draws import pick, seed_key, uniforms
from loop.model.sampling.generate import TransformersSampler

log = logging.getLogger(__name__)


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One warm-up stream per device, reused: every new stream gets a cuBLAS workspace of its own (32 MiB) that
    emptying the cache does not return, so a stream per capture would leak memory on every retry."""
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device=device)
    return _SIDE_STREAMS[device]


class _RingLayer(DynamicLayer):
    """One layer's keys and values [rows, heads, C, dim]; `update` writes the step's token at the ring column."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, column: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.column = keys, values, column
        self.device, self.dtype = keys.device, keys.dtype
        self.is_initialized = True
        # Columns attention reads: all of them, or (eager, before the ring wraps) those written.
        self.limit = keys.shape[2]

    def lazy_initialization(self, key_states, value_states) -> None:  # the buffers exist from the start
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        # Under autocast, keys leave the rotary embedding in float32 and values leave their projection in bf16;
        # the buffer holds both in one dtype (that of the attention's matmuls, which cast to it anyway).
        self.keys.index_copy_(2, self.column, key_states.to(self.keys.dtype))
        self.values.index_copy_(2, self.column, value_states.to(self.values.dtype))
        return self.keys[:, :, : self.limit], self.values[:, :, : self.limit]

    def get_seq_length(self) -> int:
        return self.keys.shape[2]


@dataclass
class _Rows:
    """The decode state of the first `rows` batch slots (views of the full-batch buffers)."""

    logits: torch.Tensor  # [B, V] float32: next-token logits of each row
    out: torch.Tensor  # [B, max_new + 1] tokens drawn so far (the extra column takes dead rows' draws)
    n_gen: torch.Tensor  # [B] tokens drawn
    pos: torch.Tensor  # [B] position id of the token fed next
    job: torch.Tensor  # [B] completion held by the slot (-1: none)
    alive: torch.Tensor  # [B] still drawing
    cand: torch.Tensor  # [B] drew a token holding the stop text's last character since the last check
    mask: torch.Tensor  # [B, C] columns each row attends to

    def view(self, rows: int) -> _Rows:
        return _Rows(**{f.name: getattr(self, f.name)[:rows] for f in fields(self)})


class DecodeLoopSampler:
    """Sampling through the model's forward in a decode loop (same protocol and semantics as
    `TransformersSampler`; see the module docstring for how it is organised and why).

    `autocast`: the region forward passes run in (the run's precision). `check_every`: decode steps between looks
    at finished rows. `cuda_graphs`: replay decode steps as CUDA graphs (default: `cfg.cuda_graphs` on CUDA).
    """

    def __init__(self, model, tokenizer, cfg: SamplingConfig, fmt: FormatName = "plain", progress=None, *,
                 autocast: contextlib.AbstractContextManager | None = None, prefill_tokens: int | None = None,
                 check_every: int = 8, cuda_graphs: bool | None = None):
        reason = decode_loop_unsupported(model)
        if reason is not None:
            raise ValueError(f"sampling.engine 'decode' cannot serve this model: {reason}; "
                             "use sampling.engine=generate")
        self.model, self.tokenizer, self.cfg, self.fmt, self.progress = model, tokenizer, cfg, fmt, progress
        self.autocast = autocast
        self.device = next(model.parameters()).device
        # Prompt tokens per prefill forward: small chunks keep activations in cache on a CPU; a GPU wants wide ones.
        self.prefill_tokens = prefill_tokens or (2048 if self.device.type == "cpu" else 65536)
        self.check_every = check_every
        graphs = cfg.cuda_graphs if cuda_graphs is None else cuda_graphs
        self.cuda_graphs = graphs and self.device.type == "cuda"
        hf = hf_model(model)
        params = inspect.signature(hf.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_last = "logits_to_keep" in params
        self.n_layers = len(layer_types(hf.config))
        head = hf.get_output_embeddings()
        vocab = head.weight.shape[0] if head is not None else hf.config.get_text_config().vocab_size
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos or 0)
        self.is_eos = token_table(vocab, [self.eos], self.device)
        # Only after a token holding the stop text's last character can a row's text have come to hold it.
        self.stops_maybe = token_table(vocab, ids_containing(tokenizer, STOP_TEXT[-1]), self.device)
        self.graphs_used = 0  # decode steps replayed from CUDA graphs in the last call (for tests and benchmarks)

    # -- the protocol ----------------------------------------------------------------------------------------
    def sample(self, questions: list[str], n: int, *, seed: int, answer_prefix: str = "") -> list[list[str]]:
        if not questions:
            return []
        prompts = [encode_prompt(self.tokenizer, q, self.fmt, answer_prefix) for q in questions]
        greedy = self.cfg.temperature == 0.0
        copies = 1 if greedy else n  # greedy copies are all alike
        # Longest prompts first: the first wave sets the ring's width, and later prompts fit behind the write column.
        jobs = sorted(range(len(questions) * copies), key=lambda j: (-len(prompts[j // copies]), j))
        capacity = len(prompts[jobs[0] // copies]) + self.cfg.max_new_tokens
        reason = decode_loop_unsupported(self.model, capacity)
        if reason is not None:
            log.warning("sampling.engine 'decode' cannot serve these prompts (%s); using 'generate'", reason)
            return TransformersSampler(self.model, self.tokenizer, self.cfg, self.fmt, self.progress,
                                       autocast=self.autocast).sample(questions, n, seed=seed,
                                                                       answer_prefix=answer_prefix)
        done: dict[int, list[int]] = {}
        key = seed_key(seed)
        was_training = self.model.training
        self.model.eval()
        self.graphs_used = 0
        try:
            with torch.inference_mode(), self.autocast or contextlib.nullcontext():
                shrink_on_oom(
                    lambda rows: self._run(prompts, copies, [j for j in jobs if j not in done], done, key, rows),
                    min(self.cfg.batch_size, len(jobs)), what="sampling")
        finally:
            if was_training:
                self.model.train()
        order = sorted(done)
        texts = self.tokenizer.batch_decode([done[j] for j in order], skip_special_tokens=True)
        out: list[list[str]] = [[""] * n for _ in questions]
        for j, text in zip(order, texts):
            qi, k = divmod(j, copies)
            if greedy:
                out[qi] = [cut_at_stop(text)] * n
            else:
                out[qi][k] = cut_at_stop(text)
        return out

    # -- one attempt at a batch size ----------------------------------------------------------------------
    def _run(self, prompts, copies: int, jobs: list[int], done: dict[int, list[int]], key: int, batch: int) -> None:
        if not jobs:
            return
        pending = deque(jobs)
        max_new = self.cfg.max_new_tokens
        width = len(prompts[pending[0] // copies])
        capacity = width + max_new
        self._capacity = capacity
        self._key = torch.tensor(key, dtype=torch.long, device=self.device)
        column = torch.tensor([width % capacity], dtype=torch.long, device=self.device)
        self._write = width  # columns written so far (the host's copy of `column`, unwrapped)
        self._pool = None  # the CUDA graphs of one attempt share a memory pool
        first = [pending.popleft() for _ in range(min(batch, len(pending)))]
        state, kv = None, None
        state, kv = self._admit(state, kv, batch, list(range(len(first))), first, prompts, copies)
        rows = batch
        cache = self._cache(kv, rows, column)
        step = self._stepper(state.view(rows), cache, column)
        while True:
            for _ in range(self.check_every):
                step()
                self._write += 1
            live = state.view(rows)
            flagged = (live.alive & live.cand).nonzero().squeeze(1).tolist()
            if flagged:
                stopped = self._stopped(live.out, flagged, live.n_gen)
                if stopped:
                    live.alive[torch.tensor(stopped, device=self.device)] = False
                live.cand.zero_()
            free = ((live.job >= 0) & ~live.alive).nonzero().squeeze(1)
            if len(free):
                lengths = live.n_gen[free].tolist()
                finished = live.job[free].tolist()
                tokens = live.out[free].tolist()
                for j, n, row_tokens in zip(finished, lengths, tokens):
                    done[j] = row_tokens[:n]
                live.job[free] = -1
                if self.progress is not None:
                    self.progress.update(len(finished))
            free = free.tolist()
            if pending and free:
                admitted = [pending.popleft() for _ in range(min(len(free), len(pending)))]
                self._admit(state, kv, batch, free[: len(admitted)], admitted, prompts, copies)
                continue
            n_alive = int(live.alive.sum())
            if n_alive == 0 and not pending:
                return
            smaller = self._smaller(rows, n_alive) if not pending else rows
            if smaller < rows:
                self._pack(state, kv, rows, smaller)
                rows = smaller
                cache = self._cache(kv, rows, column)
                step = self._stepper(state.view(rows), cache, column)

    def _smaller(self, rows: int, n_alive: int) -> int:
        """The batch to continue with once no work waits: a graph is captured per batch size, so graphs halve it
        when half the rows are done; eager steps drop finished rows once they are a sixteenth of the batch."""
        if self.cuda_graphs:
            return rows // 2 if rows > 1 and n_alive <= rows // 2 else rows
        return n_alive if rows - n_alive >= max(1, rows // 16) else rows

    # -- admission ----------------------------------------------------------------------------------------
    def _admit(self, state, kv, batch, slots, jobs, prompts, copies):
        """Prefill the prompts of `jobs` (each distinct prompt once) and install them in batch `slots`, their keys
        and values in the ring columns just behind the write column. Allocates the buffers on first use."""
        groups: list[tuple[list[int], list[int], list[int]]] = []  # (prompt, slots, jobs)
        for slot, j in zip(slots, jobs):
            prompt = prompts[j // copies]
            if groups and groups[-1][2][-1] // copies == j // copies:
                groups[-1][1].append(slot)
                groups[-1][2].append(j)
            else:
                groups.append((prompt, [slot], [j]))
        start = 0
        while start < len(groups):
            w = len(groups[start][0])  # groups come longest first
            stop = min(len(groups), start + max(1, self.prefill_tokens // w))
            chunk = groups[start:stop]
            start = stop
            keys, values, logits, valid = self._prefill([g[0] for g in chunk])
            if state is None:
                state, kv = self._allocate(batch, keys, values, logits)
            repeats = torch.tensor([len(g[1]) for g in chunk], device=self.device)
            rows = torch.tensor([s for g in chunk for s in g[1]], device=self.device)
            cols = (torch.arange(self._write - w, self._write, device=self.device)) % self._capacity
            for (k_buf, v_buf), k, v in zip(kv, keys, values):
                for buf, new in ((k_buf, k), (v_buf, v)):
                    # buf[rows, :, cols] indexes [rows, cols, heads, dim]: only the new prompts' columns are written.
                    buf[rows[:, None], :, cols[None, :]] = \
                        new.to(buf.dtype).repeat_interleave(repeats, 0).permute(0, 2, 1, 3)
            row_mask = torch.zeros((len(rows), self._capacity), dtype=torch.bool, device=self.device)
            row_mask[:, cols] = valid.repeat_interleave(repeats, 0)
            state.mask.index_copy_(0, rows, row_mask)
            state.logits.index_copy_(0, rows, logits.repeat_interleave(repeats, 0))
            lengths = torch.tensor([len(g[0]) for g in chunk], device=self.device).repeat_interleave(repeats, 0)
            state.pos.index_copy_(0, rows, lengths)
            state.n_gen.index_fill_(0, rows, 0)
            state.alive.index_fill_(0, rows, True)
            state.cand.index_fill_(0, rows, False)
            state.job.index_copy_(0, rows, torch.tensor([j for g in chunk for j in g[2]], device=self.device))
        return state, kv

    def _prefill(self, prompts: list[list[int]]):
        """Left-padded forward of `prompts`: per-layer keys/values [n, heads, w, dim], last logits, valid columns."""
        w = len(prompts[0])
        ids = torch.full((len(prompts), w), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), w), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, w - len(p) :] = torch.tensor(p)
            mask[row, w - len(p) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self._forward(ids.to(self.device), mask.to(self.device), positions.to(self.device), cache)
        keys = [layer.keys for layer in cache.layers]
        values = [layer.values for layer in cache.layers]
        return keys, values, logits, mask.to(self.device).bool()

    def _allocate(self, batch: int, keys, values, logits):
        dev, cap = self.device, self._capacity
        # A masked column still enters attention (with weight 0, and 0 * NaN is NaN), so no column may hold
        # uninitialised memory when read. Graph steps read every column: all zeros. Eager steps read only the columns
        # written so far, of which just the prompt area can hold unwritten memory (left of shorter prompts).
        zero_to = cap if self.cuda_graphs else self._write
        # Keys and values in the dtype attention computes in: autocast's, else the prefill's own (transformers'
        # prefill cache may promote values to the keys' float32).
        dtype = torch.get_autocast_dtype(dev.type) if torch.is_autocast_enabled(dev.type) else values[0].dtype
        kv = []
        for k, v in zip(keys, values):
            pair = (k.new_empty((batch, k.shape[1], cap, k.shape[-1]), dtype=dtype),
                    v.new_empty((batch, v.shape[1], cap, v.shape[-1]), dtype=dtype))
            for buf in pair:
                buf[:, :, :zero_to].zero_()
            kv.append(pair)
        state = _Rows(
            logits=torch.zeros((batch, logits.shape[-1]), dtype=torch.float32, device=dev),
            out=torch.full((batch, self.cfg.max_new_tokens + 1), self.pad, dtype=torch.long, device=dev),
            n_gen=torch.zeros(batch, dtype=torch.long, device=dev),
            pos=torch.zeros(batch, dtype=torch.long, device=dev),
            job=torch.full((batch,), -1, dtype=torch.long, device=dev),
            alive=torch.zeros(batch, dtype=torch.bool, device=dev),
            cand=torch.zeros(batch, dtype=torch.bool, device=dev),
            mask=torch.zeros((batch, cap), dtype=torch.bool, device=dev),
        )
        return state, kv

    def _cache(self, kv, rows: int, column: torch.Tensor) -> Cache:
        return Cache(layers=[_RingLayer(k[:rows], v[:rows], column) for k, v in kv])

    def _pack(self, state: _Rows, kv, rows: int, keep: int) -> None:
        """Move the live rows among the first `rows` slots into the first `keep` ones (all live rows fit there). Only
        the rows that move are copied: each live row from the back fills a finished row's slot at the front."""
        alive = state.alive[:rows]
        holes = (~alive[:keep]).nonzero().squeeze(1)
        movers = alive[keep:].nonzero().squeeze(1) + keep
        if not len(movers):
            return
        holes = holes[: len(movers)]
        for f in fields(state):
            t = getattr(state, f.name)
            t.index_copy_(0, holes, t.index_select(0, movers))
        for k, v in kv:
            k.index_copy_(0, holes, k.index_select(0, movers))
            v.index_copy_(0, holes, v.index_select(0, movers))

    # -- the decode step ----------------------------------------------------------------------------------
    def _forward(self, ids, mask, positions, cache) -> torch.Tensor:
        kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, self._cache_kw: cache,
                  "use_cache": True}
        if self._keep_last:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs).logits[:, -1].float()

    def _step(self, st: _Rows, cache: Cache, column: torch.Tensor) -> None:
        """Draw each row's next token, record it, and feed it through the model (no host synchronisation)."""
        cfg = self.cfg
        u = None if cfg.temperature == 0.0 else uniforms(self._key, st.job, st.n_gen, draws.REJECTION_ROUNDS)
        token = pick(st.logits, u, cfg.temperature, cfg.top_p)
        st.out.scatter_(1, st.n_gen[:, None], token[:, None])
        drawing = st.alive
        st.n_gen.add_(drawing.long())
        st.cand.logical_or_(drawing & self.stops_maybe[token])
        st.alive.logical_and_(~(self.is_eos[token] | (st.n_gen >= cfg.max_new_tokens)))
        # Every row sees the fed column, dead rows too, so no row ever attends to nothing (that would be NaN).
        st.mask.index_fill_(1, column, True)
        limit = cache.layers[0].limit
        with decode_attention_on(self.model):
            logits = self._forward(token[:, None], st.mask[:, None, None, :limit], st.pos[:, None], cache)
        st.logits.copy_(logits)
        st.pos.add_(st.alive.long())
        column.add_(1).remainder_(self._capacity)

    def _stepper(self, st: _Rows, cache: Cache, column: torch.Tensor):
        """A callable that runs one decode step: the eager `_step`, or the replay of its CUDA graph."""
        def eager() -> None:
            # Before the ring wraps, attention reads only the columns written so far.
            limit = min(self._write + 1, self._capacity)
            for layer in cache.layers:
                layer.limit = limit
            self._step(st, cache, column)

        if not self.cuda_graphs:
            return eager
        try:
            graph = self._capture(st, cache, column)
        except Exception as err:  # noqa: BLE001 - a failure to capture falls back to eager steps, logged
            if is_oom(err):
                raise  # the batch is too large for the card: `shrink_on_oom` halves it
            log.warning("CUDA graph capture of the decode step failed (%s); decoding eagerly", err)
            self.cuda_graphs = False
            return eager

        def replay() -> None:
            graph.replay()
            self.graphs_used += 1

        return replay

    def _capture(self, st: _Rows, cache: Cache, column: torch.Tensor) -> torch.cuda.CUDAGraph:
        """Capture one decode step. Two warm-up steps run first (kernels are chosen and the autocast weight casts are
        cached outside the graph); they change the state, which is restored before capture."""
        tensors = [getattr(st, f.name) for f in fields(st)] + [column]
        saved = [t.clone() for t in tensors]
        cols = [(column + i) % self._capacity for i in range(2)]
        saved_kv = [(layer.keys[:, :, c].clone(), layer.values[:, :, c].clone(), c)
                    for layer in cache.layers for c in cols]
        side = _side_stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step(st, cache, column)
        torch.cuda.current_stream(self.device).wait_stream(side)
        # Out of memory inside a capture aborts the process instead of raising, so make sure the step's temporaries
        # (the pick's sort and cumulative sums, about 32 bytes per row and vocabulary entry) fit before capturing;
        # if not, raise the ordinary error, on which the batch is halved.
        torch.cuda.empty_cache()
        need = 32 * st.logits.numel() + 64 * 2**20
        free = torch.cuda.mem_get_info(self.device)[0]
        if free < 1.25 * need:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory: {free / 2**20:.0f} MiB free, "
                f"the decode step's graph needs ~{need / 2**20:.0f} MiB")
        for t, s in zip(tensors, saved):
            t.copy_(s)
        for (k, v, c), layer in zip(saved_kv, (layer for layer in cache.layers for _ in cols)):
            layer.keys[:, :, c] = k
            layer.values[:, :, c] = v
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._step(st, cache, column)
        self._pool = graph.pool()
        return graph

    # -- the stop text ------------------------------------------------------------------------------------
    def _stopped(self, out: torch.Tensor, rows: list[int], n_gen: torch.Tensor) -> list[int]:
        """Rows among `rows` whose recent tokens hold the stop text."""
        span = self.check_every + len(STOP_TEXT) + 2  # tokens since the last check, plus the stop text's length
        index = torch.tensor(rows, device=out.device)
        counts = n_gen[index].tolist()
        window = out[index, : max(counts)].tolist()
        texts = self.tokenizer.batch_decode([w[max(0, n - span) : n] for w, n in zip(window, counts)],
                                            skip_special_tokens=True)
        return [r for r, text in zip(rows, texts) if STOP_TEXT in text]
