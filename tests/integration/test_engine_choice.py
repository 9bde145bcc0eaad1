"""`sampling.engine: auto`: vLLM on a GPU where a vLLM environment is set up, the decode loop everywhere else; the
choice is recorded in the run's manifest, so a resume under another engine stops instead of mixing engines."""

import sys

import pytest
import torch

from loop.config import build_config
from loop.model.backends import auto_engine, resolve_engine, sampling_engine, server_card_share
from loop.model.sampling import DecodeLoopSampler, make_sampler

pytestmark = pytest.mark.integration
CUDA = torch.device("cuda")  # a device object only: nothing here touches a GPU


def test_auto_takes_vllm_only_on_a_gpu_with_a_vllm_environment(monkeypatch):
    monkeypatch.delenv("CURATION_LOOP_VLLM_PYTHON", raising=False)
    cfg = build_config("smoke")
    assert cfg.sampling.engine == "auto"
    assert auto_engine(cfg, torch.device("cpu"))[0] == "decode"
    assert auto_engine(cfg, CUDA) == ("decode", "no vLLM environment (vllm.python, CURATION_LOOP_VLLM_PYTHON or "
                                                "vllm.url)")
    with_vllm = build_config("smoke", overrides=[f"vllm.python={sys.executable}"])
    assert auto_engine(with_vllm, CUDA)[0] == "vllm" and auto_engine(with_vllm, torch.device("cpu"))[0] == "decode"
    assert auto_engine(build_config("smoke", overrides=["vllm.python=/no/such/python"]), CUDA)[0] == "decode"
    monkeypatch.setenv("CURATION_LOOP_VLLM_PYTHON", sys.executable)
    assert auto_engine(cfg, CUDA)[0] == "vllm"
    sharded = build_config("smoke", overrides=["scale.scoring.runner=dask"])
    assert auto_engine(sharded, CUDA)[0] == "decode"  # shards run in-process samplers
    # Workers sharing one card would each start a server claiming vllm.gpu_memory_utilization of it: on the H200,
    # default-gpu's 8 workers did, and the later servers found no memory left for their KV cache.
    shared = build_config("default-gpu")
    assert (shared.workers, shared.share_gpus) == (8, True) and auto_engine(shared, CUDA)[0] == "decode"
    assert auto_engine(build_config("smoke", overrides=["workers=2", "share_gpus=false"]), CUDA)[0] == "vllm"
    assert auto_engine(build_config("smoke", overrides=["vllm.url=http://127.0.0.1:1"]), CUDA)[0] == "vllm"


def test_a_named_engine_is_kept_and_auto_is_resolved_once(monkeypatch, caplog):
    monkeypatch.delenv("CURATION_LOOP_VLLM_PYTHON", raising=False)
    named = build_config("smoke", overrides=["sampling.engine=generate"])
    assert resolve_engine(named, CUDA) is named and sampling_engine(named, CUDA) == "generate"
    with caplog.at_level("INFO", logger="loop.model.backends"):
        resolved = resolve_engine(build_config("smoke"), torch.device("cpu"))
    assert resolved.sampling.engine == "decode" and "sampling.engine auto: decode (no GPU (cpu))" in caplog.text


def test_auto_samples_in_process_with_the_decode_loop(tiny_model_dir):
    from loop.model.loading import load_base, load_tokenizer

    cfg = build_config("smoke", overrides=[f"model.name_or_path={tiny_model_dir}"])
    model = load_base(cfg.model, torch.device("cpu"))
    assert isinstance(make_sampler(model, load_tokenizer(cfg.model), cfg.sampling), DecodeLoopSampler)


def test_a_resume_under_another_sampling_engine_is_refused(tmp_path):
    from loop.store import ResumeMismatchError, RunStore

    cfg = build_config("smoke", overrides=[f"out_dir={tmp_path}"])
    store = RunStore(tmp_path)
    store.open(cfg, {"versions": {"x": "1"}, "sampling_engine": "decode"})
    store.open(cfg, {"versions": {"x": "1"}, "sampling_engine": "decode"})  # the same engine: a resume
    with pytest.raises(ResumeMismatchError, match="sampling_engine"):
        store.open(cfg, {"versions": {"x": "1"}, "sampling_engine": "vllm"})


def test_a_run_started_before_the_engine_was_recorded_resumes(tmp_path):
    """A manifest without the key (an older run) has nothing to compare it with: the resume goes on."""
    from loop.store import RunStore

    cfg = build_config("smoke", overrides=[f"out_dir={tmp_path}"])
    RunStore(tmp_path).open(cfg, {"versions": {"x": "1"}})
    RunStore(tmp_path).open(cfg, {"versions": {"x": "1"}, "sampling_engine": "decode"})


def test_a_relative_vllm_python_is_resolved_where_the_loop_runs(tmp_path, monkeypatch):
    """The server starts in the run's backend folder: `vllm.python=.venv-vllm/bin/python` (the README's form) must
    name the file under the folder the loop was started in, and a missing file is named in the error."""
    from loop.config import VLLMConfig
    from loop.model.vllm.server import VLLMServerError, vllm_python

    (tmp_path / ".venv-vllm" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-vllm" / "bin" / "python").write_text("")
    monkeypatch.chdir(tmp_path)
    assert vllm_python(VLLMConfig(python=".venv-vllm/bin/python")) == str(tmp_path / ".venv-vllm" / "bin" / "python")
    assert vllm_python(VLLMConfig(python="python3")) == "python3"  # a command name is left to PATH
    with pytest.raises(VLLMServerError, match="vllm.python 'missing/python': no such file"):
        vllm_python(VLLMConfig(python="missing/python"))


def test_training_keeps_out_the_share_of_the_card_that_the_loops_vllm_server_claims(monkeypatch):
    monkeypatch.delenv("CURATION_LOOP_VLLM_PYTHON", raising=False)
    vllm = build_config("smoke", overrides=["sampling.engine=vllm", "vllm.gpu_memory_utilization=0.25"])
    assert server_card_share(vllm, CUDA) == 0.25
    assert server_card_share(vllm, torch.device("cpu")) == 0.0  # a CPU's memory is not the card's
    assert server_card_share(build_config("smoke", overrides=["sampling.engine=decode"]), CUDA) == 0.0
    scorer_only = build_config("smoke", overrides=["sampling.engine=decode", "dynamics.nll_engine=vllm"])
    assert server_card_share(scorer_only, CUDA) == 0.5  # the server scores NLL: it claims its default share
    # A server at vllm.url is not the loop's to start: one on this card already shows in the free memory.
    assert server_card_share(build_config("smoke", overrides=["sampling.engine=vllm", "vllm.url=http://h:1"]),
                             CUDA) == 0.0
    assert server_card_share(build_config("smoke"), CUDA) == 0.0  # auto without a vLLM environment: decode
    monkeypatch.setenv("CURATION_LOOP_VLLM_PYTHON", sys.executable)
    assert server_card_share(build_config("smoke"), CUDA) == 0.5  # auto takes vLLM here
