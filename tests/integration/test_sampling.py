"""The decode-loop sampler against `model.generate` on the shipped base and on tiny models of other shapes."""

import copy
import types

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

from loop.config import ModelConfig, SamplingConfig
from loop.embedded.task import make_task
from loop.embedded.tokenizer import build_char_tokenizer
from loop.model.formatting import encode_prompt
from loop.model.loading import load_base, load_tokenizer
from loop.model.sampling import DecodeLoopSampler, TransformersSampler, make_sampler
from loop.model.sampling import draws
from loop.model.sampling.draws import pick, seed_key, uniforms

pytestmark = pytest.mark.integration
CPU = torch.device("cpu")


def sampling(**kw) -> SamplingConfig:
    return SamplingConfig(**{"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 96, "batch_size": 64, **kw})


@pytest.fixture(scope="module")
def base():
    return load_base(ModelConfig(), CPU), load_tokenizer(ModelConfig())


@pytest.fixture(scope="module")
def questions():
    # Test questions of 2 to 5 steps: prompts of different lengths share batches, completions of different lengths.
    return make_task(n_seeds=0, pool_per_seed=1, n_dev=0, n_test=36, seed=3)["question"].to_list()


@pytest.fixture(scope="module")
def greedy_reference(base, questions):
    model, tok = base
    return TransformersSampler(model, tok, sampling(temperature=0.0)).sample(questions, 1, seed=0)


def test_greedy_equals_generate_on_the_embedded_base(base, questions, greedy_reference):
    model, tok = base
    fast = DecodeLoopSampler(model, tok, sampling(temperature=0.0)).sample(questions, 2, seed=0)
    assert fast == [comps * 2 for comps in greedy_reference]
    # The base really answers: completions are full worked solutions, cut before the stop text.
    assert all("####" in c and "Done." not in c for comps in fast for c in comps)


def test_completions_come_back_in_question_order(base, questions, greedy_reference):
    model, tok = base
    order = list(reversed(range(len(questions))))
    fast = DecodeLoopSampler(model, tok, sampling(temperature=0.0, batch_size=13)).sample(
        [questions[i] for i in order], 3, seed=0)
    assert fast == [[greedy_reference[i][0]] * 3 for i in order]


def test_sampling_is_reproducible_for_a_seed_and_differs_across_seeds(base, questions):
    model, tok = base
    sampler = DecodeLoopSampler(model, tok, sampling(max_new_tokens=48))
    first = sampler.sample(questions[:12], 3, seed=5)
    assert sampler.sample(questions[:12], 3, seed=5) == first
    other = sampler.sample(questions[:12], 3, seed=6)
    assert other != first
    assert all(len(comps) == 3 for comps in first)
    # The copies of one question are drawn independently: most questions get different completions.
    assert sum(len(set(comps)) > 1 for comps in first) >= 6
    # A completion's draws are its own: the same whatever batch it shares, however often the batch is refilled
    # or packed, and whenever the loop looks for finished rows.
    for batch_size, check_every in ((1, 1), (5, 3), (64, 16)):
        again = DecodeLoopSampler(model, tok, sampling(max_new_tokens=48, batch_size=batch_size),
                                  check_every=check_every)
        assert again.sample(questions[:12], 3, seed=5) == first


def test_a_tiny_top_p_keeps_only_the_most_likely_token(base, questions, greedy_reference):
    model, tok = base
    fast = DecodeLoopSampler(model, tok, sampling(temperature=1.5, top_p=1e-6)).sample(questions, 1, seed=1)
    assert fast == greedy_reference


@pytest.mark.parametrize("nucleus", ["rejection", "sort"])
def test_top_p_cuts_the_tail_of_the_distribution(nucleus, monkeypatch):
    monkeypatch.setattr(draws, "NUCLEUS", nucleus)
    # Hand-made logits: probabilities 0.5, 0.3, 0.2 (0 elsewhere): top_p 0.4 keeps the first only...
    logits = torch.full((4000, 5), -1e9)
    logits[:, :3] = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    u = uniforms(seed_key(0), torch.arange(4000), torch.zeros(4000, dtype=torch.long), draws.REJECTION_ROUNDS)
    assert set(pick(logits, u, 1.0, 0.4).tolist()) == {0}
    # ...top_p 0.75 the first two (mass 0.8 >= 0.75), drawn about 5:3; no top-p draws all three 5:3:2.
    drawn = pick(logits, u, 1.0, 0.75)
    assert set(drawn.tolist()) == {0, 1}
    assert abs((drawn == 0).float().mean().item() - 0.5 / 0.8) < 0.03
    everything = pick(logits, u, 1.0, 1.0)
    assert [abs((everything == i).float().mean().item() - p) < 0.03 for i, p in enumerate((0.5, 0.3, 0.2))] == [True] * 3
    assert torch.equal(pick(logits, None, 0.0, 0.95), torch.zeros(4000, dtype=torch.long))


def test_both_nucleus_draws_follow_the_exact_truncated_distribution():
    """On random logits over 50 tokens, each method's draws match the nucleus probabilities computed by hand."""
    torch.manual_seed(3)
    row = torch.randn(50) * 1.5
    probs = (row / 0.8).softmax(-1)
    ordered, order = probs.sort(descending=True)
    keep = order[: int((ordered.cumsum(0) < 0.9).sum()) + 1]  # the most likely tokens until their mass reaches 0.9
    truth = torch.zeros(50)
    truth[keep] = probs[keep] / probs[keep].sum()
    n = 40000
    u = uniforms(seed_key(1), torch.arange(n), torch.zeros(n, dtype=torch.long), draws.REJECTION_ROUNDS)
    for drawn in (draws.pick_by_rejection(row.expand(n, 50), u, 0.8, 0.9),
                  draws.pick_sorted(row.expand(n, 50), u[:, 0], 0.8, 0.9)):
        freq = torch.bincount(drawn, minlength=50).float() / n
        assert set(drawn.unique().tolist()) <= set(keep.tolist())
        assert (freq - truth).abs().max() < 0.01


def test_the_draws_are_uniform_and_independent_across_jobs_and_steps():
    jobs, steps = torch.meshgrid(torch.arange(200), torch.arange(200), indexing="ij")
    u = uniforms(seed_key(7), jobs.flatten(), steps.flatten())
    assert 0.0 < float(u.min()) and float(u.max()) < 1.0
    counts = torch.histc(u, bins=10, min=0.0, max=1.0)
    assert float(((counts - 4000) ** 2 / 4000).sum()) < 30  # chi-square, 9 degrees of freedom: p < 0.001 above 28
    grid = u.reshape(200, 200)
    assert abs(float(torch.corrcoef(torch.stack([grid[:, :-1].flatten(), grid[:, 1:].flatten()]))[0, 1])) < 0.02
    assert not torch.equal(uniforms(seed_key(8), jobs.flatten(), steps.flatten()), u)


def test_eos_and_max_new_tokens_stop_a_row(base, questions):
    model, tok = base
    # With '+' as EOS, every completion stops at its first '+' (in the first step of the solution); generate
    # agrees. The char tokenizer keeps '+' in the decoded text.
    plus = copy.deepcopy(tok)
    plus.eos_token = "+"
    assert plus.eos_token_id != tok.eos_token_id
    cfg = sampling(temperature=0.0)
    fast = DecodeLoopSampler(model, plus, cfg).sample(questions[:12], 1, seed=0)
    assert fast == TransformersSampler(model, plus, cfg).sample(questions[:12], 1, seed=0)
    assert all("+" not in c[0][:-1] for c in fast)
    assert sum(c[0].endswith("+") for c in fast) >= 9  # the few others have no addition at all
    short = DecodeLoopSampler(model, tok, sampling(max_new_tokens=5)).sample(questions[:12], 2, seed=0)
    assert all(0 < len(c) <= 5 for comps in short for c in comps)


def test_make_sampler_follows_the_engine_setting(base):
    model, tok = base
    cfg = sampling()
    assert isinstance(make_sampler(model, tok, cfg), DecodeLoopSampler)
    assert isinstance(make_sampler(model, tok, cfg.model_copy(update={"engine": "generate"})), TransformersSampler)
    with pytest.raises(ValueError, match="sampling.engine"):
        make_sampler(model, tok, types.SimpleNamespace(**{**cfg.model_dump(), "engine": "vllm-typo"}))


def _tiny(kind: str, tok, window: int = 4096):
    torch.manual_seed(0)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if kind == "gpt2":  # learned absolute positions, fused qkv, no rotary
        return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                          initializer_range=0.3, **ids)).eval()
    if kind == "qwen2":  # grouped key/value heads (7 query heads per key/value head, as Qwen2.5-0.5B), biases
        return Qwen2ForCausalLM(Qwen2Config(
            vocab_size=len(tok), hidden_size=56, intermediate_size=64, num_hidden_layers=2, num_attention_heads=14,
            num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.3, **ids)).eval()
    return MistralForCausalLM(MistralConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=window, max_position_embeddings=256, initializer_range=0.3,
        **ids)).eval()


@pytest.mark.parametrize("kind", ["gpt2", "qwen2", "mistral", "llama-lora"])
def test_greedy_equals_generate_on_other_model_shapes(kind, base, questions):
    tok = build_char_tokenizer()
    if kind == "llama-lora":
        tok = base[1]
        model = get_peft_model(copy.deepcopy(base[0]), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                  init_lora_weights=False)).eval()
    else:
        model = _tiny(kind, tok)
    cfg = sampling(temperature=0.0, max_new_tokens=24)
    fast = DecodeLoopSampler(model, tok, cfg).sample(questions[:16], 1, seed=0)
    assert fast == TransformersSampler(model, tok, cfg).sample(questions[:16], 1, seed=0)
    assert len({c[0] for c in fast}) > 1


def test_a_window_shorter_than_a_sequence_falls_back_to_generate(base, questions, caplog):
    """The decode loop holds whole sequences in its buffer; a sliding window shorter than one is generate's job."""
    tok = build_char_tokenizer()
    model = _tiny("mistral", tok, window=16)
    cfg = sampling(temperature=0.0, max_new_tokens=24)
    assert isinstance(make_sampler(model, tok, cfg), DecodeLoopSampler)  # the window is only known per call
    with caplog.at_level("WARNING"):
        fast = make_sampler(model, tok, cfg).sample(questions[:8], 1, seed=0)
    assert "window" in caplog.text
    assert fast == TransformersSampler(model, tok, cfg).sample(questions[:8], 1, seed=0)
