"""`VLLMBackend`: the loop's backend over a vLLM server (`sampling.engine: vllm`, `dynamics.nll_engine: vllm`).

Binding a model makes the server serve it:
- the base (tag `base`): the server runs on the base weights, served as `base`;
- LoRA: the checkpoint's adapter is saved under the run's backend folder and loaded under the checkpoint's own
  name (a name is never reused: vLLM keys its prefix cache by adapter name, so a reloaded name could serve stale
  keys), then unloaded and deleted when the block ends;
- full fine-tuning: the weights are saved (in the model's compute dtype) and the server restarts on them, unless
  they are the weights it already serves (the last epoch of a round and the round's final model are one).
Whichever of sampling and scoring the config does not route to vLLM runs in this process (`TransformersBackend`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from loop.config import RunConfig
from loop.model.backends import Bound, TransformersBackend, TransformersScorer
from loop.model.lengths import context_size
from loop.model.loading import resolve_path
from loop.model.sampling import make_sampler
from loop.model.sampling.base import hf_model
from loop.model.vllm.client import VLLMSampler, VLLMScorer
from loop.model.vllm.server import VLLMServer

BASE_NAME = "base"


def _fingerprint(model) -> tuple[float, ...]:
    """A cheap summary of the trained weights: equal for the same weights, different after any optimizer step."""
    with torch.no_grad():
        trained = [p for p in model.parameters() if p.requires_grad] or list(model.parameters())
        return tuple(float(p.detach().float().sum()) for p in trained[:: max(1, len(trained) // 8)])


class VLLMBackend:
    name = "vllm"

    def __init__(self, cfg: RunConfig, tokenizer, device: torch.device, workdir: Path):
        self.cfg, self.tokenizer, self.device = cfg, tokenizer, device
        self.workdir = Path(workdir)
        self.lora = cfg.model.lora is not None
        self.local = TransformersBackend(cfg, tokenizer, device)
        self.server = VLLMServer(cfg.vllm, self.workdir, lora=self.lora, max_model_len=self._max_model_len(),
                                 device=device.type, trust_remote_code=cfg.model.trust_remote_code)
        self.serving: tuple[str, tuple] | None = None  # (served name, weights fingerprint) of the running server
        self.checkpoint: Path | None = None

    def _max_model_len(self) -> int:
        if self.cfg.vllm.max_model_len:
            return self.cfg.vllm.max_model_len
        from transformers import AutoConfig

        wanted = self.cfg.train.max_length + self.cfg.sampling.max_new_tokens
        context = context_size(AutoConfig.from_pretrained(resolve_path(self.cfg.model),
                                                          trust_remote_code=self.cfg.model.trust_remote_code))
        return min(wanted, context) if context else wanted

    def _serve(self, model, tag: str) -> tuple[str, str | None]:
        """Make the server serve `model`; returns (served name, adapter to unload afterwards)."""
        base_path = resolve_path(self.cfg.model)
        if tag == "base" or self.lora:
            if self.serving is None or self.serving[0] != BASE_NAME:
                self.server.start(base_path, BASE_NAME)
                self.serving = (BASE_NAME, ())
            if tag == "base":
                return BASE_NAME, None
            path = self.workdir / "adapters" / tag
            model.save_pretrained(path)
            self.server.load_adapter(tag, str(path), restore=lambda: model.save_pretrained(path))
            return tag, tag
        fingerprint = _fingerprint(model)
        if self.serving is not None and self.serving[1] == fingerprint:
            return self.serving[0], None
        path = self.workdir / "checkpoints" / tag
        hf = hf_model(model)
        dtype = self.local.precision.compute or next(hf.parameters()).dtype  # what the matmuls ran in
        hf.save_pretrained(path, state_dict={k: v.to(dtype) if v.is_floating_point() else v
                                             for k, v in hf.state_dict().items()})
        self.tokenizer.save_pretrained(path)
        self.server.start(str(path), "model")
        if self.checkpoint is not None and self.checkpoint != path:
            shutil.rmtree(self.checkpoint, ignore_errors=True)  # only the served checkpoint is kept on disk
        self.checkpoint = path
        self.serving = ("model", fingerprint)
        return "model", None

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
        self.serving = None
