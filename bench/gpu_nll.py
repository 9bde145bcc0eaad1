"""The NLL scorer's variants as bench_gpu.py's nll section times them (issue 22: NLL at 40% of the card's peak).

Each variant is one `loop.model.scoring.mean_nll` call over the same sequences, differing in the weights' dtype
(float32 master weights under bf16 autocast, as a checkpoint in training is scored; or bf16 weights, as a frozen
base), the LM head (`head_kernel`), the asynchronous scorer (`asynchronous`: pinned uploads, no padding mask, one
read-back per call), the rows per batch (256, or the loop's `dynamics.nll_batch_size` default of 64) and compiled
decoder layers (`dynamics.nll_compile`: each layer compiled with dynamic lengths for the call, as `train.compile`
compiles them; the first compiled variant's first call compiles, later ones reuse it); `mask_builder`
variants run the asynchronous scorer as it ran until the evening of 2026-12-07, with the model's mask builder and
its read-back per forward (`loop.model.causal_attention`); `cuda_graphs` variants replay the backbone as CUDA
graphs (`loop.model.nll_graphs`). The sequences are
256 of 300 tokens (100 prompt, 200 target), or for the `mixed` variants 256 of 120 to 310 tokens (a third prompt),
the loop's case: padded batches whose width changes from batch to batch; `pool` variants score 4,096 of those.
A variant's share of peak is `nll_matmul_flops` over its seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NllVariant:
    weights: str  # "fp32" (master weights under bf16 autocast) | "bf16"
    head: str  # mean_nll's head_kernel
    asynchronous: bool
    rows: int = 256
    compiled: bool = False
    lengths: str = "fixed"  # "fixed" | "mixed" | "pool" (nll_workload)
    mask_builder: bool = False  # the asynchronous scorer with the model's mask builder, as until 2026-12-07 evening
    cuda_graphs: bool = False  # the backbone replayed as CUDA graphs (dynamics.nll_cuda_graphs)


# In the order they run.
NLL_VARIANTS = {
    "fp32_master_bf16_autocast": NllVariant("fp32", "chunked", False),  # the scorer of 2026-12-03
    "fp32_master_bf16_autocast_trl_head": NllVariant("fp32", "trl", False),  # the GPU default of 2026-12-06
    "fp32_master_bf16_autocast_trl_head_async": NllVariant("fp32", "trl", True),
    "fp32_master_bf16_autocast_trl_head_async_rows64_mask_builder":  # the GPU default of 2026-12-07
        NllVariant("fp32", "trl", True, rows=64, mask_builder=True),
    "fp32_master_bf16_autocast_trl_head_async_rows64": NllVariant("fp32", "trl", True, rows=64),  # the GPU default
    "mixed_lengths_trl_head_rows64": NllVariant("fp32", "trl", False, rows=64, lengths="mixed"),
    "mixed_lengths_trl_head_async_rows64_mask_builder":
        NllVariant("fp32", "trl", True, rows=64, lengths="mixed", mask_builder=True),
    "mixed_lengths_trl_head_async_rows64": NllVariant("fp32", "trl", True, rows=64, lengths="mixed"),
    "fp32_master_bf16_autocast_trl_head_async_rows64_cuda_graphs":
        NllVariant("fp32", "trl", True, rows=64, cuda_graphs=True),
    "mixed_lengths_trl_head_async_rows64_cuda_graphs":
        NllVariant("fp32", "trl", True, rows=64, lengths="mixed", cuda_graphs=True),
    # A call the size of a pool: the graphs' captures (one per width bucket) spread over 64 batches, not 4.
    "pool_lengths_trl_head_async_rows64": NllVariant("fp32", "trl", True, rows=64, lengths="pool"),
    "pool_lengths_trl_head_async_rows64_cuda_graphs":
        NllVariant("fp32", "trl", True, rows=64, lengths="pool", cuda_graphs=True),
    "fp32_master_bf16_autocast_trl_head_async_compiled": NllVariant("fp32", "trl", True, compiled=True),
    # Compiled layers on the loop's case: 64 rows of mixed lengths, and a pool-sized call (dynamic lengths, so one
    # compile serves every width; the first of these calls compiles, as a worker's first scoring call would).
    "mixed_lengths_trl_head_async_rows64_compiled":
        NllVariant("fp32", "trl", True, rows=64, lengths="mixed", compiled=True),
    "pool_lengths_trl_head_async_rows64_compiled":
        NllVariant("fp32", "trl", True, rows=64, lengths="pool", compiled=True),
    "bf16_weights_trl_head": NllVariant("bf16", "trl", False),
    "bf16_weights_trl_head_async": NllVariant("bf16", "trl", True),
    "bf16_weights_trl_head_async_compiled": NllVariant("bf16", "trl", True, compiled=True),
}
NLL_BEFORE = "fp32_master_bf16_autocast_trl_head"  # the loop's GPU scorer before the asynchronous one
PROFILED = ("fp32_master_bf16_autocast_trl_head", "fp32_master_bf16_autocast_trl_head_async",
            "fp32_master_bf16_autocast_trl_head_async_rows64_mask_builder",
            "fp32_master_bf16_autocast_trl_head_async_rows64", "mixed_lengths_trl_head_rows64",
            "mixed_lengths_trl_head_async_rows64_mask_builder", "mixed_lengths_trl_head_async_rows64",
            "fp32_master_bf16_autocast_trl_head_async_rows64_cuda_graphs",
            "mixed_lengths_trl_head_async_rows64_cuda_graphs",
            "fp32_master_bf16_autocast_trl_head_async_compiled", "bf16_weights_trl_head_async",
            "bf16_weights_trl_head_async_compiled")


def default_nll_variant(cuda_head: str, rows: int, asynchronous: bool) -> str | None:
    """The variant the loop runs on a GPU: fp32 master weights under autocast, `head_kernel: auto`'s head on a card
    (`cuda_head`), `rows` a batch (`dynamics.nll_batch_size`'s default) and `dynamics.nll_async`'s default on a card
    (`asynchronous`); None where no variant matches."""
    wanted = NllVariant("fp32", cuda_head, asynchronous, rows=rows)  # on the fixed lengths, comparable across runs
    return next((label for label, v in NLL_VARIANTS.items() if v == wanted), None)


def nll_workload(vocab: int, lengths: str) -> tuple[list[list[int]], list[int]]:
    """The sequences and prompt lengths a variant scores (seeded, the same in every run): 256 of 300 tokens
    ("fixed"), 256 of 120-310 tokens ("mixed"), or 4,096 of 120-310 tokens ("pool", a pool's scoring call)."""
    g = torch.Generator().manual_seed(1)
    if lengths == "fixed":
        return [torch.randint(2, vocab, (300,), generator=g).tolist() for _ in range(256)], [100] * 256
    if lengths not in ("mixed", "pool"):
        raise ValueError(f"nll_workload: lengths must be fixed, mixed or pool, not {lengths!r}")
    sizes = torch.randint(120, 311, (4096 if lengths == "pool" else 256,), generator=g).tolist()
    return [torch.randint(2, vocab, (n,), generator=g).tolist() for n in sizes], [n // 3 for n in sizes]


def nll_matmul_flops(model, all_tokens: int, target_tokens: int) -> float:
    """The matmul FLOPs of one scoring pass, the work a share of peak is counted from:

        F = 2 * P_body * all_tokens + 2 * P_head * target_tokens

    P_head is the LM head's weight count: the scorer runs the head only at the positions that predict a target
    token. P_body is every other parameter but the input embedding (a lookup, not a matmul): the decoder layers and
    norms, each used at every token. With tied embeddings the shared matrix counts once, as the head. Attention's
    score and value products are left out, as in the training step's 6N count. Until 2026-12-08 the bench counted
    2 x every parameter x every token, about 10% above this on its fixed workload (100 prompt + 200 target tokens).
    """
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    params = sum(p.numel() for p in model.parameters())  # shared (tied) parameters are yielded once
    body = params - embedding.numel() - (0 if head is embedding else head.numel())
    return 2.0 * body * all_tokens + 2.0 * head.numel() * target_tokens
