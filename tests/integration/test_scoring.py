"""The fast teacher-forced NLL (target positions only, chunked head or trl's tiled kernel, token-budget batches)
against the plain float32 definition, on the embedded base and on other architectures: within 1e-4 nats, memorized flags alike."""

import numpy as np
import polars as pl
import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from loop.config import ModelConfig
from loop.dynamics.ledger import memorized_flags
from loop.embedded.task import make_task
from loop.model import scoring
from loop.model.formatting import encode_examples
from loop.model.loading import load_base, load_tokenizer
from loop.model.scoring import batches_by_tokens, mean_nll, mean_nll_reference
from tests.readbacks import ReadBacks

pytestmark = pytest.mark.integration
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelConfig())


@pytest.fixture(scope="module")
def items(tok):
    examples = make_task(n_seeds=40, pool_per_seed=1, n_dev=0, n_test=1, seed=4).filter(pl.col("split") == "seed")
    encoded = encode_examples(tok, examples, eos=True)
    return [e.input_ids for e in encoded], [e.n_prompt for e in encoded]


def tiny(kind: str, vocab: int):
    torch.manual_seed(0)
    common = {"vocab_size": vocab, "max_position_embeddings": 512, "initializer_range": 0.2}
    if kind == "qwen2":  # grouped key/value heads, untied head, attention biases
        return Qwen2ForCausalLM(Qwen2Config(hidden_size=56, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=14, num_key_value_heads=2,
                                            tie_word_embeddings=False, **common)).eval()
    if kind == "gpt2":  # learned positions, a `transformer` backbone, tied head
        return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=512, vocab_size=vocab,
                                          initializer_range=0.2)).eval()
    # Gemma-2 soft-caps its final logits: the head's output must be capped as the model's forward does.
    return Gemma2ForCausalLM(Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                          final_logit_softcapping=2.0, **common)).eval()


@pytest.mark.parametrize("head_kernel", ["chunked", "trl"])
@pytest.mark.parametrize("kind", ["embedded", "qwen2", "gpt2", "gemma2-softcap"])
def test_the_fast_path_is_the_definition(kind, head_kernel, tok, items):
    model = load_base(ModelConfig(), CPU) if kind == "embedded" else tiny(kind.split("-")[0], len(tok))
    sequences, score_from = items
    reference = mean_nll_reference(model, sequences, score_from)
    # Small token budgets force many batches and several head chunks per batch.
    scoring.HEAD_CHUNK_BYTES, saved = 4 * len(tok) * 37, scoring.HEAD_CHUNK_BYTES
    try:
        fast = mean_nll(model, sequences, score_from, pad_id=tok.pad_token_id, batch_size=8, batch_tokens=900,
                        head_kernel=head_kernel)
    finally:
        scoring.HEAD_CHUNK_BYTES = saved
    assert np.abs(fast - reference).max() < 1e-4
    ledger = pl.DataFrame({"example_id": [str(i) for i in range(len(sequences))], "nll": reference})
    tau = float(np.log(np.median(reference)))  # a threshold through the middle: flags of both kinds
    flags = memorized_flags(ledger, tau)["memorized"]
    assert 0 < flags.sum() < len(flags)
    assert flags.equals(memorized_flags(ledger.with_columns(nll=pl.Series(fast)), tau)["memorized"])
    # Whole-text NLL (reference-model perplexity) takes the same path from position 1.
    whole = mean_nll(model, sequences, [1] * len(sequences), pad_id=tok.pad_token_id, head_kernel=head_kernel)
    assert np.abs(whole - mean_nll_reference(model, sequences, [1] * len(sequences))).max() < 1e-4


def test_the_fast_path_is_used_where_it_agrees_with_the_model(tok, items):
    for kind in ("qwen2", "gemma2"):
        model = tiny(kind, len(tok))
        mean_nll(model, *items, pad_id=tok.pad_token_id)
        assert model._curation_fast_nll is True  # backbone + head (+ soft-cap) reproduce the forward


def test_batches_respect_rows_and_padded_tokens():
    lengths = [5, 50, 7, 48, 6, 49, 120, 3]
    batches = batches_by_tokens(lengths, max_rows=3, max_tokens=100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100
    assert [7 - 1] in [list(b) for b in batches]  # the 120-token sequence alone: it exceeds the budget itself
    # Similar lengths share a batch: the short ones together, the long ones together.
    assert {frozenset(b) for b in batches} >= {frozenset({7, 0, 4})}


def test_the_head_kernel_auto_is_trls_on_a_gpu_and_the_chunked_head_elsewhere():
    assert scoring.resolve_head_kernel("auto", CPU) == "chunked"
    assert scoring.resolve_head_kernel("auto", torch.device("cuda")) == "trl"
    assert scoring.resolve_head_kernel("trl", CPU) == "trl"
    assert scoring.resolve_head_kernel("chunked", torch.device("cuda")) == "chunked"
    with pytest.raises(ValueError, match="head_kernel must be one of"):
        scoring.resolve_head_kernel("fast", CPU)


@pytest.mark.parametrize("kind", ["embedded", "qwen2", "gpt2", "gemma2-softcap"])
def test_the_asynchronous_scorer_gives_the_same_nll_and_reads_nothing_back(kind, tok, items):
    """Without the right-padding mask every real token sees the same tokens (the causal path), so the NLL is the
    masked one up to summation order. The scorer's own code reads nothing back per batch, and where the model runs
    SDPA (every model here but Gemma-2, whose soft-capped attention runs eagerly) nothing is read back at all: the
    model's mask builder, whose test for packed rows reads once per forward, is kept out
    (`loop.model.causal_attention`). The call's results come back in one copy at its end (on a CPU not a
    dispatched read, so the profile on a card counts it)."""
    model = load_base(ModelConfig(), CPU) if kind == "embedded" else tiny(kind.split("-")[0], len(tok))
    sequences, score_from = items
    mean_nll(model, sequences[:2], score_from[:2], pad_id=tok.pad_token_id)  # the model's fast-path check, once
    runs = {}
    for asynchronous in (False, True):
        with ReadBacks() as reads:
            nll = mean_nll(model, sequences, score_from, pad_id=tok.pad_token_id, batch_size=8, batch_tokens=900,
                           asynchronous=asynchronous)
        runs[asynchronous] = nll, reads
    batches = len(batches_by_tokens([len(s) for s in sequences], 8, 900))
    assert batches >= 5 and len({len(s) for s in sequences}) > 1  # many batches, each padded
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=0, atol=1e-5)
    assert np.abs(runs[True][0] - mean_nll_reference(model, sequences, score_from)).max() < 1e-4
    reads = runs[True][1]
    if kind.startswith("gemma2"):  # eager attention: not switched; the builder's reads are the only ones
        assert model.config._attn_implementation == "eager"
        assert {where.rsplit("/", 1)[-1] for where in reads.where} <= {"masking_utils.py"}
        assert 0 < reads.count <= 2 * batches  # one per mask the model builds (full and sliding), per forward
    else:
        assert runs[False][1].count >= batches  # the masked scorer reads back at least once a batch
        assert reads.count == 0, reads.where
        assert model.config._attn_implementation == "sdpa"  # switched back after the call


def test_nll_async_auto_is_on_on_a_gpu_only():
    assert scoring.resolve_asynchronous("auto", CPU) is False
    assert scoring.resolve_asynchronous("auto", torch.device("cuda")) is True
    assert scoring.resolve_asynchronous(True, CPU) is True
    with pytest.raises(ValueError, match="nll_async must be"):
        scoring.resolve_asynchronous("yes", CPU)


def test_padding_and_target_positions_on_hand_made_sequences():
    sequences, score_from = [[5, 6, 7, 8], [9, 10], [11, 12, 13]], [2, 3, 0]
    ids, mask = scoring._pad(sequences, 0, CPU)
    assert ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    ids_async, no_mask = scoring._pad(sequences, 0, CPU, asynchronous=True)  # the asynchronous scorer runs without
    assert torch.equal(ids_async, ids) and no_mask is None
    rows, positions, counts = scoring._targets(sequences, score_from, CPU)
    # Row 0 scores tokens 2..3 (from positions 1, 2); row 1 nothing (score_from past its end); row 2 from token 1.
    assert counts == [2, 0, 2]
    assert rows.tolist() == [0, 0, 2, 2] and positions.tolist() == [1, 2, 0, 1]


def test_cuda_graphs_are_ignored_off_a_card_and_widths_round_up_to_their_bucket(tok, items):
    from loop.model.nll_graphs import LENGTH_BUCKET, bucket_width

    assert [bucket_width(w) for w in (1, LENGTH_BUCKET, LENGTH_BUCKET + 1)] == [LENGTH_BUCKET, LENGTH_BUCKET,
                                                                                2 * LENGTH_BUCKET]
    model = tiny("qwen2", len(tok))
    sequences, score_from = items
    asked = mean_nll(model, sequences, score_from, pad_id=tok.pad_token_id, asynchronous=True, cuda_graphs=True)
    np.testing.assert_array_equal(asked, mean_nll(model, sequences, score_from, pad_id=tok.pad_token_id,
                                                  asynchronous=True))
