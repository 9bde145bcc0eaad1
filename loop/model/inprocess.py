"""The backend contract and the in-process backend: a backend `bind`s a model and yields a `Bound` pair, a `Sampler`
(`loop.model.sampling`) and a `Scorer` (mean NLL over exactly the target token ids); `TransformersBackend` runs both
on the model in this process. Which backend a run opens, and the units and shards around it, are
`loop.model.backends` and `loop.model.shards`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from loop.config import RunConfig
from loop.model.formatting import Encoded
from loop.model.precision import resolve_precision
from loop.model.sampling import Sampler, make_sampler
from loop.model.scoring import mean_nll


class Scorer(Protocol):
    def mean_nll(self, items: Sequence[Encoded]) -> np.ndarray:
        """Mean NLL (nats per token) of `ids[n_prompt:]` given `ids[:n_prompt]`, per item, in input order."""
        ...


@dataclass(frozen=True)
class Bound:
    sampler: Sampler
    scorer: Scorer


class Backend(Protocol):
    name: str

    def bind(self, model, *, tag: str) -> contextlib.AbstractContextManager[Bound]:
        """Sampling and scoring of `model` (a torch module in this process) inside the block; `tag` names the
        checkpoint (unique within a run, e.g. `s0-loss-r2-ep3`); the tag `base` says `model` is the base itself."""
        ...

    def close(self) -> None: ...


class TransformersScorer:
    """`loop.model.scoring.mean_nll` over a model in this process, in the run's precision."""

    def __init__(self, model, tokenizer, cfg: RunConfig, autocast):
        self.model, self.tokenizer, self.cfg, self.autocast = model, tokenizer, cfg, autocast

    def mean_nll(self, items: Sequence[Encoded]) -> np.ndarray:
        dyn = self.cfg.dynamics
        return mean_nll(self.model, [e.input_ids for e in items], [e.n_prompt for e in items],
                        pad_id=self.tokenizer.pad_token_id, batch_size=dyn.nll_batch_size,
                        batch_tokens=dyn.nll_batch_tokens, autocast=self.autocast(), asynchronous=dyn.nll_async,
                        cuda_graphs=dyn.nll_cuda_graphs, compile_layers=dyn.nll_compile)


class TransformersBackend:
    """Sampling (`sampling.engine` decode or generate) and scoring in this process, on the model in hand."""

    name = "transformers"

    def __init__(self, cfg: RunConfig, tokenizer, device: torch.device, workdir: Path | None = None):
        self.cfg, self.tokenizer, self.device = cfg, tokenizer, device
        self.precision = resolve_precision(cfg.model, cfg.train, device)

    @contextlib.contextmanager
    def bind(self, model, *, tag: str) -> Iterator[Bound]:
        sampler = make_sampler(model, self.tokenizer, self.cfg.sampling, self.cfg.model.format,
                               autocast=self.precision.autocast())
        yield Bound(sampler, TransformersScorer(model, self.tokenizer, self.cfg, self.precision.autocast))

    def close(self) -> None:
        pass
