"""Sampling and teacher-forced scoring through a vLLM server, behind the loop's `Sampler` and `Scorer` protocols.

Both send token ids, exactly those the trainer saw (`loop.model.formatting`), never text, so the server's
tokenizer cannot disagree with training. Sampling sends one request per question with its n, temperature,
top-p, the stop text and, by default, a seed of its own derived from the call's seed and the question's index
(a list request would share one seed across prompts); requests run concurrently. Scoring asks for the logprob of
each prompt token (`prompt_logprobs`, computed before any temperature) and averages them over the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from loop.config import SamplingConfig, VLLMConfig
from loop.model.formatting import STOP_TEXT, Encoded, FormatName, encode_prompt
from loop.model.sampling.base import cut_at_stop
from loop.model.vllm.server import VLLMServer
from loop.seeds import derived_seed

NLL_BATCH = 32  # sequences per scoring request


def request_seed(seed: int, index: int) -> int:
    """The seed of question `index`'s request: vLLM takes a signed 32-bit seed, hence the top bit cleared."""
    return derived_seed(seed, index) & 0x7FFFFFFF


class VLLMSampler:
    def __init__(self, server: VLLMServer, name: str, tokenizer, cfg: SamplingConfig, vcfg: VLLMConfig,
                 fmt: FormatName = "plain"):
        self.server, self.name, self.tokenizer, self.cfg, self.vcfg, self.fmt = server, name, tokenizer, cfg, vcfg, fmt
        self.extra: dict = {}  # more request fields (a benchmark fixes lengths: ignore_eos, min_tokens)

    def request(self, index: int, ids: list[int], n: int, seed: int) -> dict:
        """The /v1/completions body for question `index` (token ids `ids`) of a call under `seed`."""
        payload = {"model": self.name, "prompt": ids, "n": n, "temperature": self.cfg.temperature,
                   "top_p": self.cfg.top_p if self.cfg.temperature > 0 else 1.0, "max_tokens": self.cfg.max_new_tokens,
                   "stop": [STOP_TEXT], "skip_special_tokens": True, **self.extra}
        if self.vcfg.seeds == "per_request":
            payload["seed"] = request_seed(seed, index)
        return payload

    def _one(self, args) -> list[str]:
        choices = sorted(self.server.post("/v1/completions", self.request(*args))["choices"], key=lambda c: c["index"])
        return [cut_at_stop(c["text"]) for c in choices]

    def sample(self, questions: list[str], n: int, *, seed: int, answer_prefix: str = "") -> list[list[str]]:
        if not questions:
            return []
        greedy = self.cfg.temperature == 0.0
        jobs = [(i, encode_prompt(self.tokenizer, q, self.fmt, answer_prefix), 1 if greedy else n, seed)
                for i, q in enumerate(questions)]
        with ThreadPoolExecutor(max_workers=self.vcfg.concurrency) as pool:
            out = list(pool.map(self._one, jobs))
        return [comps * n if greedy else comps for comps in out]


class VLLMScorer:
    def __init__(self, server: VLLMServer, name: str, vcfg: VLLMConfig):
        self.server, self.name, self.vcfg = server, name, vcfg

    def _batch(self, items: Sequence[Encoded]) -> list[float]:
        payload = {"model": self.name, "prompt": [e.input_ids for e in items], "max_tokens": 1,
                   "prompt_logprobs": 0, "temperature": 0.0}
        choices = sorted(self.server.post("/v1/completions", payload)["choices"], key=lambda c: c["index"])
        out = []
        for choice, e in zip(choices, items):
            positions = choice["prompt_logprobs"]  # one dict per position (the first is null): {str(id): {logprob}}
            first = max(e.n_prompt, 1)
            logprobs = [positions[t][str(e.input_ids[t])]["logprob"] for t in range(first, len(e.input_ids))]
            out.append(-float(np.mean(logprobs)) if logprobs else float("nan"))
        return out

    def mean_nll(self, items: Sequence[Encoded]) -> np.ndarray:
        batches = [items[i : i + NLL_BATCH] for i in range(0, len(items), NLL_BATCH)]
        with ThreadPoolExecutor(max_workers=max(1, min(8, self.vcfg.concurrency))) as pool:
            parts = list(pool.map(self._batch, batches))
        return np.array([x for part in parts for x in part], dtype=np.float64)
