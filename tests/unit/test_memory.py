"""The training-memory estimate behind `gradient_checkpointing: auto`, on the shapes the defaults must fit."""

from loop.model.memory import ModelShape, free_for_training, needs_checkpointing, training_bytes

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


# Qwen2.5-1.5B, fully fine-tuned at 32 examples a micro-batch of GSM8K (longest about 400 tokens), on an H100's
# 79.18 GiB: measured on 2026-12-07, the step held 57 GiB without checkpointing and ran out of memory once a vLLM
# server had claimed its 0.25 of the card.
QWEN25_15B = ModelShape(n_params=1_543_714_304, hidden=1536, ffn=8960, layers=28)
H100 = int(79.18 * 2**30)


def test_the_memory_training_may_take_keeps_a_vllm_servers_share_out_before_and_after_it_starts():
    assert free_for_training(H100, H100, 0.0) == H100
    assert free_for_training(H100, H100, 0.25) == int(0.75 * H100)  # not started: its share is promised
    after_start = H100 - int(0.25 * H100) - 2 * 2**30  # started, plus 2 GiB of another process
    assert free_for_training(after_start, H100, 0.25) == after_start
    assert free_for_training(10 * GB, 80 * GB, 0.5) == 10 * GB
    assert free_for_training(80 * GB, 80 * GB, 1.0) == 0


def test_a_full_fine_tune_beside_a_vllm_server_turns_checkpointing_on_and_then_fits_its_share():
    kw = dict(trainable=QWEN25_15B.n_params, frozen_bytes_per_param=4, compute_bytes=2, tokens_per_step=32 * 400)
    assert not needs_checkpointing(QWEN25_15B, free_bytes=free_for_training(H100, H100, 0.0), **kw)
    beside = free_for_training(H100, H100, 0.25)
    assert needs_checkpointing(QWEN25_15B, free_bytes=beside, **kw)
    assert training_bytes(QWEN25_15B, checkpointing=True, **kw) < beside


def test_workers_sharing_a_card_each_plan_for_their_part_of_it():
    assert free_for_training(H100, H100, 0.0, sharers=8) == H100 // 8
    assert free_for_training(H100, H100, 0.1, sharers=4) == int(0.6 * H100 / 4)  # four servers of 10% each
    assert free_for_training(5 * GB, H100, 0.0, sharers=2) == 5 * GB  # the others already hold the rest
    assert free_for_training(H100, H100, 0.0, sharers=0) == H100  # no worker count: a process of its own
    # Measured on an H100 on 2026-12-07: one lean-step worker of the Qwen2.5-0.5B shape at 32 examples a
    # micro-batch peaked at 24.5 GB, and eight of them, each judging the whole card free, all ran out of memory.
    qwen05 = ModelShape(n_params=494_032_768, hidden=896, ffn=4864, layers=24)
    kw = dict(trainable=qwen05.n_params, frozen_bytes_per_param=4, compute_bytes=2, tokens_per_step=32 * 300)
    assert 20 * GB < training_bytes(qwen05, checkpointing=False, **kw) < 30 * GB
    assert not needs_checkpointing(qwen05, free_bytes=free_for_training(H100, H100, 0.0), **kw)
    assert needs_checkpointing(qwen05, free_bytes=free_for_training(H100, H100, 0.0, sharers=8), **kw)
