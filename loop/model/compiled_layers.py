"""Compiled decoder layers for the NLL scorer (`dynamics.nll_compile`), for one call and undone after it.

On a card the scorer is bound by the host launching kernels (bench/RESULTS.md, "Without the mask builder"): some
2,500 a 256-sequence call of a 0.5B model. Compiling each decoder layer fuses its element-wise work (norms, rotary
embeddings, activations, casts) into fewer kernels. Measured on one H100 (2026-12-07), with layers compiled the way
`train.compile` compiles them: 1.40x the eager scorer on 256 sequences of one length (35.3% of peak against 25.2%).

`compiled_layers(model)` swaps each layer in its ModuleList for `torch.compile(layer, dynamic=True)` (one graph
for every batch length) and puts the original layers back after the block, also on an error, so sampling and
training later in the round see the model as it was. Dynamo keys what it compiles on the layer's code, not on the
instance: the first call in a process compiles (7.1 s for the 0.5B shape on the H100), a later round's model, of
the same architecture, reuses it (the training step's measurement of the same: bench/RESULTS.md, "Compile once per
process"). Layers that `train.compile` left compiled are used as they are. The NLL is the eager scorer's up to
the fused kernels' summation order (tests/integration/test_compiled_scoring.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from loop.model.decoder_layers import decoder_layer_list


def already_compiled(layer: torch.nn.Module) -> bool:
    """Whether `layer.compile()` (what `train.compile` calls) already compiled this layer in place."""
    return getattr(layer, "_compiled_call_impl", None) is not None  # nn.Module.compile's own attribute


@contextlib.contextmanager
def compiled_layers(model, on: bool = True) -> Iterator[bool]:
    """Inside the block, `model`'s decoder layers run compiled; yields whether this block compiled them (False
    when `on` is False, when no decoder layers are found, or when they were compiled already)."""
    holder = decoder_layer_list(model) if on else None
    if holder is None or any(already_compiled(layer) for layer in holder):
        yield False
        return
    originals = list(holder)
    for i, layer in enumerate(originals):
        holder[i] = torch.compile(layer, dynamic=True)
    try:
        yield True
    finally:
        for i, layer in enumerate(originals):
            holder[i] = layer
