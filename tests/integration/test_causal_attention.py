"""loop.model.causal_attention: where the plain causal attention may stand in for the model's masks, and that the
switch is undone after its block, also when the block fails."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from loop.model.causal_attention import CAUSAL_SDPA, applies, causal_attention
from tests.readbacks import ReadBacks

pytestmark = pytest.mark.integration


def qwen2(**overrides):
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100, max_position_embeddings=256, **overrides)
    return Qwen2ForCausalLM(config).eval()


def test_it_applies_to_sdpa_models_whose_masks_causality_gives():
    assert applies(qwen2(), longest=200)
    windowed = qwen2(use_sliding_window=True, sliding_window=64, max_window_layers=0)
    assert "sliding_attention" in windowed.config.layer_types
    assert applies(windowed, longest=64)  # a window as long as the longest sequence changes nothing
    assert not applies(windowed, longest=65)  # a window that binds needs the builder's sliding mask
    eager = qwen2()
    eager.set_attn_implementation("eager")
    assert not applies(eager, longest=10)


def test_the_switch_gives_the_same_outputs_reads_nothing_and_is_undone():
    model = qwen2()
    ids = torch.randint(0, 100, (3, 20))
    with ReadBacks() as builder_reads:
        before = model(input_ids=ids, use_cache=False).logits
    assert builder_reads.count >= 1  # the builder's test for packed rows
    with causal_attention(model, longest=20) as switched, ReadBacks() as reads:
        assert switched and model.config._attn_implementation == CAUSAL_SDPA
        inside = model(input_ids=ids, use_cache=False).logits
    assert reads.count == 0
    torch.testing.assert_close(inside, before, rtol=0, atol=1e-6)
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="inside"), causal_attention(model, longest=20):
        raise RuntimeError("inside")
    assert model.config._attn_implementation == "sdpa"
    with causal_attention(model, longest=20, on=False) as switched:
        assert not switched and model.config._attn_implementation == "sdpa"
