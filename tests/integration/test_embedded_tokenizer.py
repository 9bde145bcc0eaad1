"""The embedded char tokenizer: every character the task emits is one known token, BOS comes first, it
survives save/load, and the shipped base checkpoint loads offline with it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from loop.embedded import task as T
from loop.embedded.tokenizer import ALPHABET, build_char_tokenizer

ASSET = Path(__file__).resolve().parents[2] / "loop" / "assets" / "embedded-base"


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def texts():
    """Everything the task can put in front of a model: frame texts, pretraining documents, word lists."""
    frame = T.make_task(n_seeds=60, pool_per_seed=3, n_dev=20, n_test=60, min_steps=1, max_steps=5, seed=0)
    rows = [T.prompt_text(r["question"]) + T.target_text(r["solution"]) for r in frame.iter_rows(named=True)]
    rng = np.random.default_rng(0)
    docs = [T.pretraining_text(rng) for _ in range(300)]
    words = [n for n, _ in T.NAMES] + list(T.ITEMS) + list(T.VERBS) + list(T.PREFIXES) + list(T.SEPARATORS)
    styles = [s.format(a=30, op=op, n=9, r=0) for s in T.STEP_STYLES for op in "+-*"]
    return rows + docs + [" ".join(words).capitalize() + "?", "".join(styles), "0123456789"]


def test_every_task_character_is_in_the_alphabet(texts):
    used = set("".join(texts))
    assert used <= set(ALPHABET), sorted(used - set(ALPHABET))
    assert {"\n", " ", "#", "?", ":", ";", ",", "."} <= used


def test_round_trip_one_token_per_char_and_bos_first(tok, texts):
    for text in texts:
        ids = tok(text).input_ids
        assert ids[0] == tok.bos_token_id
        assert len(ids) == len(text) + 1  # BOS + one token per character
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok(ALPHABET, add_special_tokens=False).input_ids == [tok.convert_tokens_to_ids(c) for c in ALPHABET]


def test_special_tokens_and_unknown(tok):
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}) == 4
    assert tok.pad_token_id == 0
    assert tok("é").input_ids == [tok.bos_token_id, tok.unk_token_id]
    assert len(tok) == len(ALPHABET) + 4


def test_padding_side_and_save_load(tok, tmp_path):
    batch = ["Mia has 7 pens.\nAnswer:", "1+1=2"]
    left = tok(batch, padding=True).input_ids
    assert left[1][0] == tok.pad_token_id and left[1][-1] != tok.pad_token_id
    right = build_char_tokenizer(padding_side="right")(batch, padding=True).input_ids
    assert right[1][-1] == tok.pad_token_id and right[1][0] == tok.bos_token_id
    with pytest.raises(ValueError, match="padding_side"):
        build_char_tokenizer(padding_side="middle")
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(batch, padding=True).input_ids == left
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token) == ("[BOS]", "[EOS]", "[PAD]")


def test_shipped_base_loads_offline_and_is_trained(tok):
    loaded = AutoTokenizer.from_pretrained(ASSET)
    assert loaded.get_vocab() == tok.get_vocab()
    model = AutoModelForCausalLM.from_pretrained(ASSET)
    assert model.dtype == torch.float32 and model.config.vocab_size == len(tok)
    assert 0.8e6 <= sum(p.numel() for p in model.parameters()) <= 1.2e6
    record = json.loads((ASSET / "pretrain.json").read_text())
    assert 0.35 <= record["base"]["accuracy"] <= 0.65
    # A trained model predicts a solution far better than chance (ln 100 = 4.6 nats per token).
    problem = T.draw_problems(1, 2, 2, seed=0)[0]
    prompt = tok(T.prompt_text(problem.question)).input_ids
    target = tok(T.target_text(problem.solution), add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    with torch.no_grad():
        nll = model(input_ids=ids, labels=labels).loss.item()
    assert nll < 0.6
