"""The sampling and vllm sections: how completions are drawn, and the vLLM server that may draw them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from loop.config.base import Strict


class SamplingConfig(Strict):
    """How completions are drawn (for learning dynamics and for test accuracy)."""

    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(512, gt=0)
    batch_size: int = Field(
        256, gt=0, description="sequences decoded at once (halved and retried on CUDA out of memory)")
    engine: Literal["auto", "decode", "generate", "vllm"] = Field(
        "auto",
        description="auto = vllm on a GPU where a vLLM environment is set up (vllm.python, CURATION_LOOP_VLLM_PYTHON "
        "or vllm.url; measured faster there), else decode (loop.model.backends.resolve_engine logs the choice); "
        "decode = the project's decode loop over the model's forward (batch kept full, CUDA graphs on a GPU); "
        "generate = transformers' generate (the reference; used automatically where decode cannot serve the "
        "model); vllm = a `vllm serve` process (section vllm)",
    )
    kv_cache: Literal["static", "dynamic"] = Field(
        "static", description="generate engine only: static avoids re-allocating the KV cache every decode step"
    )
    cuda_graphs: bool = Field(True, description="decode engine on CUDA: replay each decode step as a CUDA graph")
    unit: int = Field(
        512, gt=0, description="questions per sampling call and examples per teacher-forced scoring call: the work "
        "unit a scoring shard takes (loop.model.shards). Each unit samples under a seed of its own, the first under "
        "the call's, so a call of at most this many items runs as one")


class VLLMConfig(Strict):
    """The vLLM backend (sampling.engine: vllm): vLLM's OpenAI-compatible server in its own environment, over HTTP.

    vLLM and Prefect pin incompatible fastapi versions, so vLLM lives in a separate virtual environment; the loop
    starts the server (`python -m vllm.entrypoints.openai.api_server`), waits for /health, keeps its log in the run
    store and stops it, or connects to `url`. LoRA runs load each checkpoint's adapter under a new name; full
    fine-tuning serves each checkpoint's weights by reloading them into the running server (`weight_update`).
    """

    url: str | None = Field(None, description="an already running server (http://host:port); null = start one")
    python: str | None = Field(
        None, description="the Python of the vLLM environment (e.g. .venv-vllm/bin/python); null = the environment "
        "variable CURATION_LOOP_VLLM_PYTHON")
    port: int = Field(0, ge=0, description="port of a started server; 0 = a free one")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_model_len: int | None = Field(
        None, gt=0, description="null = train.max_length + sampling.max_new_tokens, within the model's context")
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0, description="share of the card vLLM may take")
    max_lora_rank: int = Field(64, gt=0)
    seeds: Literal["per_request", "server"] = Field(
        "per_request", description="per_request = each prompt's own seed, derived from the run's (reproducible per "
        "prompt); server = the engine's one seed only")
    concurrency: int = Field(64, gt=0, description="requests in flight at once")
    startup_timeout_s: float = Field(900.0, gt=0)
    max_restarts: int = Field(
        2, ge=0, description="times a started server that dies (or stops answering) is restarted on the weights and "
        "adapters it served before the step fails; the requests it dropped are sent again, each with its own seed")
    extra_args: list[str] = Field(default_factory=list, description="more server flags, passed as given "
                                  "(e.g. --enforce-eager)")
    weight_update: Literal["auto", "reload", "restart"] = Field(
        "auto", description="how full fine-tuning's new weights reach the server: reload = in place through vLLM's "
        "reload_weights (its dev endpoints, VLLM_SERVER_DEV_MODE), no restart; restart = a new server on them; auto = "
        "reload on a GPU (a restart there costs a CUDA-graph capture), restart elsewhere. A reload the server refuses "
        "falls back to a restart, logged")
