"""How much GPU memory a training round needs, and whether gradient checkpointing must be on for it to fit.

The estimate counts what stays allocated through a training step:
- weights: trained ones in float32 (master copy) plus their bf16 cast kept by autocast for the step; frozen ones
  (a LoRA base) in their storage dtype;
- gradients (float32) and AdamW's two moments (float32) of the trained weights;
- activations kept for the backward pass, in the compute dtype: per token and layer about 8*hidden + 4*ffn values
  (the inputs of the q/k/v, output and MLP projections, the gate/up outputs and their product, the norms and
  residuals; attention scores are not kept with sdpa or flash attention). With gradient checkpointing only each
  layer's input is kept, plus one layer's activations while it is recomputed.
The LM head's logits are not counted: trl computes the loss through a chunked head. A 15% margin covers the
allocator's fragmentation and CUDA's own context.

`train.gradient_checkpointing: auto` turns checkpointing on exactly when the estimate without it exceeds the memory
training may take (`free_for_training`), so a 1B model trains fully at full speed and an 8B LoRA run still fits an
80 GB card. Where the loop starts a vLLM server on the same card, the server's share is kept out of that memory even
before the server starts: it starts at the first checkpoint to sample, while the round is still training, and
claims `vllm.gpu_memory_utilization` of the whole card. Without that, a Qwen2.5-1.5B full fine-tune at 32 examples
a micro-batch trained without checkpointing on an empty H100 and ran out of memory once the server had taken its
quarter (bench/RESULTS.md, 2026-12-07). Likewise, workers that share one card (`share_gpus`) each plan for their
part of it: eight 0.5B workers that each saw the whole card free all ran out of memory (24.5 GB each on 80 GB).
"""

from __future__ import annotations

from dataclasses import dataclass

MARGIN = 1.15


@dataclass(frozen=True)
class ModelShape:
    n_params: int
    hidden: int
    ffn: int
    layers: int

    @classmethod
    def of(cls, model) -> ModelShape:
        config = model.config.get_text_config()
        hidden = config.hidden_size
        ffn = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
        layers = config.num_hidden_layers
        return cls(sum(p.numel() for p in model.parameters()), hidden, ffn, layers)


def training_bytes(shape: ModelShape, *, trainable: int, frozen_bytes_per_param: int, compute_bytes: int,
                   tokens_per_step: int, checkpointing: bool) -> int:
    """Estimated peak bytes of one training step (see the module docstring for what is counted)."""
    frozen = shape.n_params - trainable
    weights = frozen * frozen_bytes_per_param + trainable * 4
    autocast_copies = trainable * compute_bytes if compute_bytes < 4 else 0
    grads_and_adam = trainable * (4 + 8)
    per_token_layer = (8 * shape.hidden + 4 * shape.ffn) * compute_bytes
    if checkpointing:
        activations = tokens_per_step * (shape.layers * shape.hidden * compute_bytes + per_token_layer)
    else:
        activations = tokens_per_step * shape.layers * per_token_layer
    return int(MARGIN * (weights + autocast_copies + grads_and_adam + activations))


def free_for_training(free_bytes: int, total_bytes: int, server_share: float, sharers: int = 1) -> int:
    """Bytes one process's training step may take: min(free, (1 - sharers x server_share) x total / sharers).

    `sharers`: the run's processes that train on this card at once (its workers, where they share it), each given
    an equal part; `server_share`: the share of the card each one's vLLM server claims (0 without one). Before the
    others start (or a server does) the card is free but their parts are promised; once they run, `free_bytes`
    already excludes them and the minimum leaves the free memory as it is."""
    sharers = max(1, sharers)
    return min(free_bytes, int(max(0.0, 1.0 - sharers * server_share) * total_bytes / sharers))


def needs_checkpointing(shape: ModelShape, *, trainable: int, frozen_bytes_per_param: int, compute_bytes: int,
                        tokens_per_step: int, free_bytes: int) -> bool:
    """Whether the step would not fit `free_bytes` without gradient checkpointing."""
    return training_bytes(shape, trainable=trainable, frozen_bytes_per_param=frozen_bytes_per_param,
                          compute_bytes=compute_bytes, tokens_per_step=tokens_per_step,
                          checkpointing=False) > free_bytes
