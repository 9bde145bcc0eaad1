"""`TransformersSampler`: batched `model.generate`, the reference for the decode loop and its fallback.

Prompts of similar length share a batch (left padded); each completion is cut at the stop text afterwards.
Randomness is torch's global generator, seeded per batch, so results depend on the batch size (unlike the decode
loop's per-completion draws).
"""

from __future__ import annotations

import contextlib

import torch

from loop.config import SamplingConfig
from loop.model.formatting import FormatName, encode_prompt
from loop.model.sampling.base import cut_at_stop


class TransformersSampler:
    """Batched `model.generate` with left padding; prompts of similar length share a batch."""

    def __init__(self, model, tokenizer, cfg: SamplingConfig, fmt: FormatName = "plain", progress=None, *,
                 autocast: contextlib.AbstractContextManager | None = None):
        self.model, self.tokenizer, self.cfg, self.fmt = model, tokenizer, cfg, fmt
        self.progress = progress
        self.autocast = autocast

    @torch.no_grad()
    def sample(self, questions: list[str], n: int, *, seed: int, answer_prefix: str = "") -> list[list[str]]:
        if not questions:
            return []
        device = next(self.model.parameters()).device
        prompts = [encode_prompt(self.tokenizer, q, self.fmt, answer_prefix) for q in questions]
        jobs = sorted(((len(p), qi) for qi, p in enumerate(prompts) for _ in range(n)))
        out: list[list[str]] = [[] for _ in questions]
        was_training = self.model.training
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        for batch_no, start in enumerate(range(0, len(jobs), self.cfg.batch_size)):
            batch = [qi for _, qi in jobs[start : start + self.cfg.batch_size]]
            width = max(len(prompts[qi]) for qi in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, qi in enumerate(batch):
                p = prompts[qi]
                ids[row, width - len(p) :] = torch.tensor(p)
                mask[row, width - len(p) :] = 1
            torch.manual_seed(seed * 1_000_003 + batch_no)
            greedy = self.cfg.temperature == 0.0
            with self.autocast or contextlib.nullcontext():
                generated = self.model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    do_sample=not greedy,
                    temperature=None if greedy else self.cfg.temperature,
                    top_p=None if greedy else self.cfg.top_p,
                    top_k=None,
                    max_new_tokens=self.cfg.max_new_tokens,
                    pad_token_id=pad,
                    eos_token_id=self.tokenizer.eos_token_id,
                    cache_implementation=self.cfg.kv_cache,
                    disable_compile=True,  # a static cache would otherwise trigger torch.compile on CUDA, per shape
                )
            texts = self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            for qi, text in zip(batch, texts):
                out[qi].append(cut_at_stop(text))
            if self.progress is not None:
                self.progress.update(len(batch))
        if was_training:
            self.model.train()
        return out
