"""Fixtures of tiny real models, shared by the integration and GPU tests (torch is imported only when used)."""

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer Llama (random weights, no download) + char tokenizer, loadable with from_pretrained."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from loop.embedded.tokenizer import build_char_tokenizer

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
