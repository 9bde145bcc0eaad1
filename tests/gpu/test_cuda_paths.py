"""The GPU path on a real CUDA device: NLL and sampling against their references, CUDA graphs against eager
steps, out-of-memory backoff under a real memory cap, and mixed-precision training that keeps float32 weights.
Skipped where torch sees no CUDA device (the CPU suite covers the same code without graphs and autocast)."""

import numpy as np
import polars as pl
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from loop.config import ModelConfig, SamplingConfig, build_config
from loop.embedded.task import make_task
from loop.model.formatting import encode_examples
from loop.model.loading import load_base, load_tokenizer
from loop.model.precision import Precision
from loop.model.sampling import DecodeLoopSampler, TransformersSampler
from loop.model.scoring import mean_nll, mean_nll_reference
from loop.model.training import train_round

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_float32():
    # References are float32: TF32 matmuls (on for training) would put 1e-3 between two float32 computations.
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelConfig())


@pytest.fixture(scope="module")
def task():
    return make_task(n_seeds=64, pool_per_seed=1, n_dev=0, n_test=48, seed=5)


def qwen(vocab: int, dtype=torch.float32):
    """A small Qwen2 (grouped key/value heads 7:1, biases) with random weights on the GPU."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        return Qwen2ForCausalLM(Qwen2Config(
            vocab_size=vocab, hidden_size=448, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=14,
            num_key_value_heads=2, max_position_embeddings=4096, initializer_range=0.05)).to(dtype).eval()


@pytest.mark.parametrize("kind", ["embedded", "qwen2"])
def test_nll_on_cuda_is_the_float32_definition(kind, tok, task):
    model = load_base(ModelConfig(), CUDA) if kind == "embedded" else qwen(len(tok))
    seeds = task.filter(pl.col("split") == "seed")
    enc = encode_examples(tok, seeds, eos=True)
    seqs, starts = [e.input_ids for e in enc], [e.n_prompt for e in enc]
    reference = mean_nll_reference(model, seqs, starts)
    fast = mean_nll(model, seqs, starts, pad_id=tok.pad_token_id, batch_tokens=2048)
    assert np.abs(fast - reference).max() < 1e-4
    # Under bf16 autocast (how a checkpoint in training is scored) the NLL stays close to float32.
    mixed = mean_nll(model, seqs, starts, pad_id=tok.pad_token_id,
                     autocast=Precision(torch.float32, torch.bfloat16, "cuda").autocast())
    assert np.abs(mixed - reference).max() < 0.05


@pytest.mark.parametrize("kind", ["embedded", "qwen2"])
def test_nll_through_cuda_graphs_is_the_eager_nll(kind, tok, task, monkeypatch):
    """dynamics.nll_cuda_graphs: the backbone replayed as graphs over padded shapes gives the eager scorer's NLL,
    in float32 and under bf16 autocast, with fewer graphs than batches (widths share a bucket)."""
    from loop.model import nll_graphs

    model = load_base(ModelConfig(), CUDA) if kind == "embedded" else qwen(len(tok))
    enc = encode_examples(tok, task, eos=True)
    seqs, starts = [e.input_ids for e in enc], [e.n_prompt for e in enc]
    captured = []
    original = nll_graphs.BackboneGraphs._capture

    def counted(self, ids, width):
        captured.append(width)
        return original(self, ids, width)

    monkeypatch.setattr(nll_graphs.BackboneGraphs, "_capture", counted)
    for autocast in (None, Precision(torch.float32, torch.bfloat16, "cuda").autocast):
        kwargs = {"pad_id": tok.pad_token_id, "batch_size": 8, "asynchronous": True}
        eager = mean_nll(model, seqs, starts, autocast=autocast and autocast(), **kwargs)
        graphed = mean_nll(model, seqs, starts, autocast=autocast and autocast(), cuda_graphs=True, **kwargs)
        np.testing.assert_allclose(graphed, eager, rtol=0, atol=1e-4 if autocast is None else 2e-2)
    batches = -(-len(seqs) // 8)
    assert captured and len(captured) < 2 * batches  # both calls captured, some widths shared a graph
    assert all(width % nll_graphs.LENGTH_BUCKET == 0 for width in captured)


@pytest.mark.parametrize("kind", ["embedded", "qwen2"])
def test_decode_loop_on_cuda_equals_generate_and_graphs_equal_eager(kind, tok, task):
    model = load_base(ModelConfig(), CUDA) if kind == "embedded" else qwen(len(tok))
    questions = task.filter(pl.col("split") == "test")["question"].to_list()
    greedy = SamplingConfig(temperature=0.0, top_p=0.95, max_new_tokens=64, batch_size=16)
    reference = TransformersSampler(model, tok, greedy).sample(questions, 1, seed=0)
    graphs = DecodeLoopSampler(model, tok, greedy, cuda_graphs=True)
    assert graphs.sample(questions, 1, seed=0) == reference
    assert graphs.graphs_used > 0  # the steps were replayed from CUDA graphs
    sampled = SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=64, batch_size=32)
    with_graphs = DecodeLoopSampler(model, tok, sampled, cuda_graphs=True).sample(questions, 3, seed=4)
    eager = DecodeLoopSampler(model, tok, sampled, cuda_graphs=False).sample(questions, 3, seed=4)
    assert with_graphs == eager
    assert sum(len(set(c)) > 1 for c in with_graphs) > len(questions) // 2


def test_sampling_on_a_nearly_full_card_halves_its_batch_and_gives_the_same_completions(tok, task, caplog):
    model = qwen(len(tok))
    questions = task.filter(pl.col("split") == "test")["question"].to_list()
    cfg = SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=1024, batch_size=1024)
    small = DecodeLoopSampler(model, tok, cfg.model_copy(update={"batch_size": 16})).sample(questions, 8, seed=1)
    torch.cuda.empty_cache()
    # Fill the card, as another process would, leaving ~360 MiB: the cache of the first batch (384 rows: 4 layers x
    # 2 x 2 heads x 32 dims x ~1,100 columns x 4 bytes x 384 = 0.43 GB) cannot fit; a quarter of it can.
    free = torch.cuda.mem_get_info()[0]
    blocker = torch.empty(free - 360 * 2**20, dtype=torch.uint8, device="cuda")
    try:
        with caplog.at_level("WARNING"):
            capped = DecodeLoopSampler(model, tok, cfg).sample(questions, 8, seed=1)
    finally:
        del blocker
        torch.cuda.empty_cache()
    assert "out of memory at batch" in caplog.text
    assert capped == small


def test_mixed_precision_training_keeps_float32_weights_and_small_updates(tiny_model_dir, task):
    cfg = build_config("smoke", overrides=[f"model.name_or_path={tiny_model_dir}", "train.learning_rate=2e-5",
                                           "train.epochs=1", "device=cuda"])
    tok = load_tokenizer(cfg.model)
    before = {k: v.clone() for k, v in load_base(cfg.model, CUDA).named_parameters()}
    model, _ = train_round(cfg, tok, task.filter(pl.col("split") == "seed"), seed=0, device=CUDA)
    after = dict(model.named_parameters())
    assert {p.dtype for p in after.values()} == {torch.float32}
    # At lr 2e-5 an update is ~1e-5 of a weight, below bf16's rounding step: float32 master weights keep it.
    changed = np.mean([float((after[k] != v).float().mean()) for k, v in before.items() if "norm" not in k])
    assert changed > 0.9
