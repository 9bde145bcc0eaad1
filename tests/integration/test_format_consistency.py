"""One prompt format for training, memorization NLL and sampling, for the paper's plain format and for a
chat template: the tokens trl trains on are the tokens the tracker scores, the sampler's prompt is the
trained context, and a model trained in a format answers in it."""

import polars as pl
import pytest
import torch

from loop.config import build_config
from loop.model.inprocess import TransformersBackend
from loop.model.formatting import encode_example, encode_prompt, prompt_text, target_text
from loop.model.loading import load_base, load_tokenizer
from loop.model.sampling import TransformersSampler, cut_at_stop
from loop.model.scoring import mean_nll
from loop.model.training import build_dataset, train_round
from loop.dynamics.tracking import DynamicsTracker

pytestmark = pytest.mark.integration
CPU = torch.device("cpu")
# A minimal chat template in the style of instruct models: BOS, role headers, the assistant turn opened.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
EXAMPLES = pl.DataFrame({"id": ["a", "b"], "question": ["Ann has 2 cats and gets 3. How many?", "7-4?"],
                         "solution": ["2+3=5 #### 5", "7-4=3 #### 3"], "answer": ["5", "3"]})
FORMATS = ["plain", "chat"]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models on a shared 2-core machine: a second torch thread only adds contention (10x slower here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(model_dir, fmt, *extra):
    return build_config("smoke", overrides=[f"model.name_or_path={model_dir}", f"model.format={fmt}",
                                            "dynamics.tau_mode=absolute", "dynamics.tau=0.0", *extra])


def tracker(cfg, tok, examples):
    return DynamicsTracker(cfg, tok, examples, cfg.dynamics.tau, seed=0, sample=False,
                           backend=TransformersBackend(cfg, tok, CPU), tag="t")


def chat_tokenizer(cfg):
    tok = load_tokenizer(cfg.model)
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.mark.parametrize("fmt, eos", [("plain", "null"), ("plain", "true"), ("chat", "null")])
def test_training_rows_are_the_scored_sequences_and_start_with_the_sampled_prompt(tiny_model_dir, fmt, eos):
    cfg = config(tiny_model_dir, fmt, f"model.train_eos={eos}")
    tok = chat_tokenizer(cfg)
    rows = build_dataset(tok, EXAMPLES, cfg.model, 256)
    tracked = tracker(cfg, tok, EXAMPLES)
    # The paper's plain target ends at "\nDone." (no EOS); a chat target ends with EOS, the end of the turn.
    closing = tok.eos_token if (fmt == "chat" or eos == "true") else ""
    for i, (q, s) in enumerate(zip(EXAMPLES["question"], EXAMPLES["solution"])):
        enc = encode_example(tok, q, s, fmt, eos=cfg.model.eos_closes_target)
        row, prompt = rows[i], encode_prompt(tok, q, fmt)
        assert row["input_ids"] == enc.input_ids == tracked.encoded[i].input_ids
        n_prompt = row["completion_mask"].index(1)
        assert n_prompt == enc.n_prompt == tracked.encoded[i].n_prompt == len(prompt)
        assert row["input_ids"][:n_prompt] == prompt  # the sampler's context is the trained context
        # The plain format gets the tokenizer's BOS; a chat template writes its own.
        assert tok.decode(prompt) == (tok.bos_token if fmt == "plain" else "") + prompt_text(q, tok, fmt)
        assert tok.decode(row["input_ids"][n_prompt:]) == target_text(s, fmt) + closing
    first = tok.decode(encode_prompt(tok, EXAMPLES["question"][0], fmt))
    assert first.startswith(tok.bos_token)
    assert ("<|assistant|>" in first) == (fmt == "chat") and ("\nAnswer:" in first) == (fmt == "plain")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_memorization_nll_is_the_training_loss(tiny_model_dir, fmt):
    cfg = config(tiny_model_dir, fmt)
    tok = chat_tokenizer(cfg)
    model = load_base(cfg.model, CPU)
    row = build_dataset(tok, EXAMPLES.head(1), cfg.model, 256)[0]
    ids = torch.tensor([row["input_ids"]])
    labels = ids.clone()
    labels[0, torch.tensor(row["completion_mask"]) == 0] = -100  # what trl's completion-only loss masks
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    tracked = tracker(cfg, tok, EXAMPLES.head(1))
    tracked.at_epoch(model, cfg.train.epochs)
    assert tracked.ledger()["nll"][0] == pytest.approx(loss, rel=1e-5)
    enc = tracked.encoded[0]
    assert mean_nll(model, [enc.input_ids], [enc.n_prompt], pad_id=tok.pad_token_id)[0] == pytest.approx(
        loss, rel=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_model_trained_in_a_format_is_scored_and_sampled_in_it(tiny_model_dir, fmt):
    """Trained to memorize two examples, the model gives their solutions back when prompted in its format
    (the sampler's prompt), with a far lower target NLL in its format than in the other one."""
    cfg = config(tiny_model_dir, fmt, "train.epochs=80", "train.learning_rate=1e-2", "train.batch_size=2",
                 "train.warmup_steps=0", "sampling.temperature=0", "sampling.max_new_tokens=24")
    tok = chat_tokenizer(cfg)
    torch.manual_seed(0)
    model, _ = train_round(cfg, tok, EXAMPLES, seed=0, device=CPU)
    completions = TransformersSampler(model, tok, cfg.sampling, fmt).sample(EXAMPLES["question"].to_list(), 1, seed=0)
    assert [c[0] for c in completions] == [cut_at_stop(target_text(s, fmt)) for s in EXAMPLES["solution"]]
    other = "chat" if fmt == "plain" else "plain"
    nll = {f: mean_nll(model, *zip(*[(e.input_ids, e.n_prompt) for e in (
        encode_example(tok, q, s, f) for q, s in zip(EXAMPLES["question"], EXAMPLES["solution"]))]),
        pad_id=tok.pad_token_id).mean() for f in (fmt, other)}
    assert nll[fmt] < 0.1 and nll[other] > 1.0
