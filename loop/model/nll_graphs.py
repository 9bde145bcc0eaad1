"""CUDA graphs of the NLL scorer's backbone forward (`dynamics.nll_cuda_graphs`): one launch per batch.

On a card the asynchronous scorer is bound by the host launching kernels, some 2,500 a call of 256 sequences for
a 0.5B model (bench/RESULTS.md, "Without the mask builder"). A CUDA graph records a forward's kernels once and
replays them with one launch. Graphs need fixed shapes and a forward that reads nothing back, so they are used only
where the asynchronous scorer keeps the model's mask builder out (`loop.model.causal_attention`):

- a batch of r rows and width w is written into a fixed input of `rows` x W token ids, W = w rounded up to a
  multiple of `LENGTH_BUCKET`, the rest filled with padding. Under causal attention a real token's hidden state
  depends only on its own row's tokens before it, so the extra rows and columns change nothing it sees;
- one graph per width W (the rows are the call's `batch_size`), captured on first use after two warm-up forwards
  on a side stream, each with its own memory pool (batches replay in any order, so pools are not shared), at
  most `MAX_GRAPHS` a call;
- graphs live for one `mean_nll` call only: they hold the model's weights as they were (and, under autocast, the
  casts autocast cached for the call), so the next call, on a model trained since, captures its own.

The LM head runs outside the graph (its number of target positions changes from batch to batch).

Measured on one H100 (2026-12-08, bench/RESULTS.md): the same NLL as the eager scorer, at 0.61x its speed on 256
sequences of one length and 0.34x on mixed lengths: a call that brings a width for a few batches pays two warm-ups
and a capture for each, more than the replays save. So `dynamics.nll_cuda_graphs` stays off.
"""

from __future__ import annotations

import torch

LENGTH_BUCKET = 64  # tokens: widths are rounded up to a multiple of this, so a call captures a few graphs
MAX_GRAPHS = 16  # per call; wider batches beyond this many shapes run eagerly


def bucket_width(width: int) -> int:
    """The graph width a batch of `width` tokens runs at: the next multiple of LENGTH_BUCKET."""
    return -(-width // LENGTH_BUCKET) * LENGTH_BUCKET


class BackboneGraphs:
    """The backbone's last hidden states for right-padded token ids, through one CUDA graph per padded shape."""

    def __init__(self, backbone, rows: int, pad_id: int):
        self.backbone = backbone
        self.rows = rows
        self.pad_id = pad_id
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _capture(self, ids_like: torch.Tensor, width: int):
        static_ids = torch.full((self.rows, width), self.pad_id, dtype=ids_like.dtype, device=ids_like.device)
        side = torch.cuda.Stream(device=ids_like.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: lazy initialisation and kernel selection happen outside the graph
            for _ in range(2):
                self.backbone(input_ids=static_ids, use_cache=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.backbone(input_ids=static_ids, use_cache=False).last_hidden_state
        return graph, static_ids, static_out

    def hidden(self, ids: torch.Tensor) -> torch.Tensor | None:
        """Hidden states [r, w, d] of token ids [r, w] (r <= rows), or None where the shape gets no graph (the
        caller then runs the backbone itself). The result is a view of the graph's output: it is overwritten by
        the graph's next replay, so it must be consumed (as the scorer does, by gathering) before then."""
        r, w = ids.shape
        width = bucket_width(w)
        if r > self.rows:
            return None
        if width not in self.graphs:
            if len(self.graphs) >= MAX_GRAPHS:
                return None
            self.graphs[width] = self._capture(ids, width)
        graph, static_ids, static_out = self.graphs[width]
        static_ids.fill_(self.pad_id)
        static_ids[:r, :w].copy_(ids)
        graph.replay()
        return static_out[:r, :w]
