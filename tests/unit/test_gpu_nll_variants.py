"""bench/gpu_nll.py: the NLL figure reported as the loop's is the variant the loop's defaults run on a card, and its
share of peak counts the work the scorer does."""

import pytest
import torch

from bench.gpu_nll import NLL_BEFORE, NLL_VARIANTS, default_nll_variant, nll_matmul_flops, nll_workload
from loop.config import DynamicsConfig
from loop.model.scoring import resolve_asynchronous, resolve_head_kernel


def test_the_default_variant_is_what_the_loops_defaults_resolve_to_on_a_card():
    cuda = torch.device("cuda")
    label = default_nll_variant(resolve_head_kernel("auto", cuda), DynamicsConfig().nll_batch_size,
                                resolve_asynchronous(DynamicsConfig().nll_async, cuda))
    variant = NLL_VARIANTS[label]
    assert variant.head == resolve_head_kernel("auto", cuda)
    assert variant.asynchronous == resolve_asynchronous(DynamicsConfig().nll_async, cuda)
    assert variant.rows == DynamicsConfig().nll_batch_size and variant.weights == "fp32" and not variant.compiled
    assert not variant.mask_builder  # the loop keeps the model's mask builder out (loop.model.causal_attention)


def test_variants_that_no_default_runs_are_not_reported_as_the_loops():
    assert default_nll_variant("trl", 256, True) == "fp32_master_bf16_autocast_trl_head_async"
    assert default_nll_variant("trl", 256, False) == NLL_BEFORE
    assert default_nll_variant("trl", 128, True) is None
    assert NLL_VARIANTS[NLL_BEFORE].asynchronous is False and NLL_VARIANTS[NLL_BEFORE].head == "trl"


def test_the_workloads_fixed_and_mixed_lengths():
    fixed, starts = nll_workload(1000, "fixed")
    assert len(fixed) == 256 and {len(s) for s in fixed} == {300} and set(starts) == {100}
    assert fixed == nll_workload(1000, "fixed")[0]  # seeded: every run scores the same tokens
    mixed, prompts = nll_workload(1000, "mixed")
    lengths = [len(s) for s in mixed]
    assert min(lengths) >= 120 and max(lengths) <= 310 and len(set(lengths)) > 50
    assert prompts == [n // 3 for n in lengths]


def test_the_pool_workload_is_a_pool_sized_call_of_mixed_lengths():
    pool, prompts = nll_workload(1000, "pool")
    lengths = [len(s) for s in pool]
    assert len(pool) == 4096 and min(lengths) >= 120 and max(lengths) <= 310
    assert prompts == [n // 3 for n in lengths]
    assert NLL_VARIANTS["pool_lengths_trl_head_async_rows64_cuda_graphs"].cuda_graphs


def test_an_unknown_workload_is_refused_by_name():
    with pytest.raises(ValueError, match="'ragged'"):
        nll_workload(1000, "ragged")


def _tiny_llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=100, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_nll_flops_count_the_head_at_target_positions_and_no_embedding_lookup(tied):
    # By hand: each layer has q, k, v, o (4 x 8 x 8 = 256), gate, up, down (3 x 8 x 16 = 384) and two norms (16):
    # 656 a layer, 1,312 for two, plus the final norm (8): 1,320 body parameters. The head is 100 x 8 = 800.
    model = _tiny_llama(tied)
    assert nll_matmul_flops(model, all_tokens=30, target_tokens=20) == 2 * 1320 * 30 + 2 * 800 * 20
