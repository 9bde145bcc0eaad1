"""Draw completions for prompts: the `Sampler` protocol and its transformers engines.

Engines share one protocol and one sampling semantics (temperature, top-p nucleus, temperature 0 = greedy, stop
at EOS or after `max_new_tokens`, completions cut at `\\nDone.`):
- `decode` (`DecodeLoopSampler`, the default): the project's decode loop over the model's forward (decode.py).
- `generate` (`TransformersSampler`): transformers' `model.generate`, the reference and the fallback for models
  the decode loop cannot serve (linear-attention, soft-capped or windowed attention).
The vLLM engine lives in `loop.model.vllm` (a server in its own environment) behind the same protocol.
"""

from __future__ import annotations

import contextlib
import logging

from loop.config import SamplingConfig
from loop.model.formatting import FormatName
from loop.model.sampling.base import Sampler, cut_at_stop, decode_loop_unsupported
from loop.model.sampling.decode import DecodeLoopSampler
from loop.model.sampling.generate import TransformersSampler
from loop.plugins import PluginRegistry

log = logging.getLogger(__name__)

# the in-process samplers by `sampling.engine`: class(model, tokenizer, cfg, fmt, progress, *, autocast); a third
# party adds one under the entry-point group curation_loop.samplers
SAMPLERS: PluginRegistry = PluginRegistry("sampler", group="curation_loop.samplers")
SAMPLERS.register(DecodeLoopSampler, "decode")
SAMPLERS.register(TransformersSampler, "generate")

__all__ = ["SAMPLERS", "DecodeLoopSampler", "Sampler", "TransformersSampler", "cut_at_stop",
           "decode_loop_unsupported", "make_sampler"]


def make_sampler(model, tokenizer, cfg: SamplingConfig, fmt: FormatName = "plain", progress=None, *,
                 autocast: contextlib.AbstractContextManager | None = None) -> Sampler:
    """The in-process sampler `cfg.engine` names ("decode" or "generate"; "auto" is "decode" in process); "decode"
    falls back to "generate", with a warning, for a model it cannot serve (see `decode_loop_unsupported`)."""
    engine = "decode" if cfg.engine == "auto" else cfg.engine
    if engine not in SAMPLERS:
        raise ValueError(f"sampling.engine must be one of {SAMPLERS.names()} for an in-process sampler, got {engine!r}")
    if engine == "decode":
        reason = decode_loop_unsupported(model)
        if reason is not None:
            log.warning("sampling.engine 'decode' cannot serve this model (%s); using 'generate'", reason)
            engine = "generate"
    return SAMPLERS.resolve(engine)(model, tokenizer, cfg, fmt, progress, autocast=autocast)
