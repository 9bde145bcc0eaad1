"""The training-memory estimate behind `gradient_checkpointing: auto`, on the shapes the defaults must fit."""

from loop.model.memory import ModelShape, needs_checkpointing, training_bytes

GB = 10**9
LLAMA3_8B = ModelShape(n_params=8_030_000_000, hidden=4096, ffn=14336, layers=32)
LLAMA32_1B = ModelShape(n_params=1_236_000_000, hidden=2048, ffn=8192, layers=16)
LORA_R16_8B = 16 * 32 * (3 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336))  # q,o + k,v + 3 MLP, r=16


def test_an_8b_lora_run_needs_checkpointing_on_an_80gb_card_and_then_fits():
    kw = dict(trainable=LORA_R16_8B, frozen_bytes_per_param=2, compute_bytes=2, tokens_per_step=16 * 1024)
    assert needs_checkpointing(LLAMA3_8B, free_bytes=80 * GB, **kw)
    assert training_bytes(LLAMA3_8B, checkpointing=True, **kw) < 40 * GB


def test_a_1b_full_fine_tune_fits_an_80gb_card_without_checkpointing():
    kw = dict(trainable=LLAMA32_1B.n_params, frozen_bytes_per_param=4, compute_bytes=2, tokens_per_step=16 * 1024)
    assert not needs_checkpointing(LLAMA32_1B, free_bytes=80 * GB, **kw)
    # Weights, gradients and AdamW: 16 bytes per trained parameter plus its bf16 cast, at least.
    assert training_bytes(LLAMA32_1B, checkpointing=False, **kw) > 18 * LLAMA32_1B.n_params


def test_checkpointing_keeps_only_layer_inputs():
    kw = dict(trainable=0, frozen_bytes_per_param=2, compute_bytes=2, tokens_per_step=1000)
    full = training_bytes(LLAMA3_8B, checkpointing=False, **kw)
    kept = training_bytes(LLAMA3_8B, checkpointing=True, **kw)
    weights = 1.15 * LLAMA3_8B.n_params * 2
    per_token_layer = (8 * 4096 + 4 * 14336) * 2
    assert abs((full - weights) - 1.15 * 1000 * 32 * per_token_layer) < 1e3
    assert abs((kept - weights) - 1.15 * 1000 * (32 * 4096 * 2 + per_token_layer)) < 1e3
