"""Backends: where sampling and teacher-forced scoring of a model happen, behind one protocol.

A backend is opened once per process from the config and `bind`s each model the loop wants measured (the base,
or a checkpoint in training), yielding a `Bound` pair:
- `sampler.sample(questions, n, seed=..., answer_prefix="")`: completions (`loop.model.sampling.Sampler`);
- `scorer.mean_nll(items)`: mean NLL over exactly the target token ids of each `Encoded` item (`ids[n_prompt:]`).
Tracking, evaluation and signals receive the bound pair, never a model and tokenizer, so a backend may run the
model anywhere: `transformers` in this process, `vllm` in a server of its own environment over HTTP. Backends are
named lazily (`"module:attr"`), so importing the loop never imports an optional backend's dependencies. The
contract and the in-process backend are `loop.model.inprocess`; this module opens the one a run names.
"""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path

import torch

from loop.config import RunConfig
from loop.model.inprocess import Backend
from loop.model.shards import ShardedBackend, UnitBackend
from loop.plugins import PluginRegistry

log = logging.getLogger(__name__)


# name -> backend class (cfg, tokenizer, device, workdir); named lazily, so that importing the loop never imports an
# optional backend's dependencies. A third party adds one under the entry-point group curation_loop.backends.
BACKENDS: PluginRegistry = PluginRegistry("backend", group="curation_loop.backends")
BACKENDS.lazy("transformers", "loop.model.inprocess:TransformersBackend")
BACKENDS.lazy("vllm", "loop.model.vllm.backend:VLLMBackend")


def backend_name(cfg: RunConfig) -> str:
    """The backend of a config whose sampling engine is resolved (`resolve_engine`)."""
    return "vllm" if cfg.sampling.engine == "vllm" or cfg.dynamics.nll_engine == "vllm" else "transformers"


def auto_engine(cfg: RunConfig, device: torch.device) -> tuple[str, str]:
    """The sampling engine `sampling.engine: auto` takes on `device`, and why.

    vLLM where it can run (a GPU with a vLLM environment set up), else the decode loop. vLLM was never the slower of
    the two where measured (bench/RESULTS.md, the same prompts and lengths): 1.46x the decode loop's tokens/s at the
    Llama-3.1-8B shape and 1.15x at the Qwen2.5-0.5B shape, each alone on an H100. Sharded scoring runs
    in-process samplers, and vLLM's CPU build is slower than the decode loop on the embedded model, so neither takes
    vLLM unasked."""
    if device.type != "cuda":
        return "decode", f"no GPU ({device.type})"
    if cfg.scale.scoring.runner != "none":
        return "decode", "scale.scoring shards run in-process samplers"
    if cfg.workers > 1 and cfg.share_gpus:
        return "decode", (f"{cfg.workers} workers share the card: a vLLM server each would claim "
                          "vllm.gpu_memory_utilization of it")
    python = cfg.vllm.python or os.environ.get("CURATION_LOOP_VLLM_PYTHON")
    if cfg.vllm.url:
        return "vllm", f"a running vLLM server at vllm.url {cfg.vllm.url}"
    if python and Path(python).exists():
        return "vllm", f"a GPU and a vLLM environment ({python})"
    return "decode", "no vLLM environment (vllm.python, CURATION_LOOP_VLLM_PYTHON or vllm.url)"


def sampling_engine(cfg: RunConfig, device: torch.device) -> str:
    """The engine that samples for `cfg` on `device`: the configured one, or the one `auto` takes."""
    return auto_engine(cfg, device)[0] if cfg.sampling.engine == "auto" else cfg.sampling.engine


def server_card_share(cfg: RunConfig, device: torch.device) -> float:
    """The share of `device` that a vLLM server the loop starts for `cfg` claims (`vllm.gpu_memory_utilization`);
    0 where no server of the loop's runs on the card: another engine, a CPU, or a server at `vllm.url`, which the
    loop does not start (one on this card already shows in its free memory)."""
    if device.type != "cuda" or cfg.vllm.url:
        return 0.0
    vllm = sampling_engine(cfg, device) == "vllm" or cfg.dynamics.nll_engine == "vllm"
    return cfg.vllm.gpu_memory_utilization if vllm else 0.0


def resolve_engine(cfg: RunConfig, device: torch.device) -> RunConfig:
    """`cfg` with `sampling.engine: auto` replaced by the engine `auto_engine` takes (logged); others unchanged."""
    if cfg.sampling.engine != "auto":
        return cfg
    engine, why = auto_engine(cfg, device)
    log.info("sampling.engine auto: %s (%s)", engine, why)
    return cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"engine": engine})})


_OPEN: dict[tuple[str, str], Backend] = {}


def open_backend(cfg: RunConfig, tokenizer, device: torch.device, workdir: Path, executor=None) -> Backend:
    """The backend the config names (`sampling.engine` / `dynamics.nll_engine`), its files under `workdir`; with an
    `executor` (`loop.model.shards.Executor`), the sharded backend that runs the work units on its workers.

    One backend per run and process: the steps a process runs share it (a vLLM server starts once), and what it
    started is stopped when the process exits, or by `close_backends`. Every call is cut into the same work units
    whichever backend runs it (`loop.model.shards`), so sharded and in-process runs compute the same.
    """
    cfg = resolve_engine(cfg, device)
    name = "sharded" if executor is not None else backend_name(cfg)
    key = (name, str(Path(workdir).resolve()))
    if key not in _OPEN:
        if executor is not None:
            _OPEN[key] = ShardedBackend(cfg, tokenizer, device, workdir, executor)
        else:
            inner = BACKENDS.resolve(name)(cfg, tokenizer, device, workdir)
            _OPEN[key] = UnitBackend(inner, cfg.sampling.unit)
    return _OPEN[key]


@atexit.register
def close_backends() -> None:
    while _OPEN:
        _, backend = _OPEN.popitem()
        backend.close()
