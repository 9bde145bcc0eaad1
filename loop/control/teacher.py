"""A teacher model behind any OpenAI-compatible endpoint (the GPU path's vLLM server, or a hosted API) as a
generator of new items: for each seed it asks for "a similar but new question" (the prompt the paper's authors used
to build their pool), then samples several solutions and keeps the question only where enough of them agree on the
final answer (verification by answer agreement). The agreed answer and one solution reaching it become the item,
which `generation.vet` then checks like any other. An API key is read from the environment variable named in the
config, never written anywhere; the teacher's text is untrusted input (graded and vetted, never executed).
"""

from __future__ import annotations

import os
from collections import Counter

import httpx
import polars as pl

from loop.grading import extract_answer

QUESTION_PROMPT = ("Please act as a professional math teacher. Your goal is to create a similar but new question "
                   "according to the Given Question, with a different setting and numbers. Only write the new "
                   "question.\nGiven Question: {question}\nNew Question:")
ANSWER_FORMAT = {"gsm8k": "End with a line '#### <number>'.", "math": "Put the final answer in \\boxed{}.",
                 "embedded": "End with '#### <number>'."}
SOLVE_PROMPT = "Solve the problem step by step. {format}\nProblem: {question}\nSolution:"


class TeacherGenerator:
    name = "teacher"

    def __init__(self, url: str, model: str, task: str, *, samples: int = 4, min_agreement: float = 0.75,
                 temperature: float = 0.7, max_tokens: int = 512, api_key_env: str | None = None,
                 timeout_s: float = 120.0, question_prompt: str = QUESTION_PROMPT, solve_prompt: str = SOLVE_PROMPT):
        if samples < 1 or not 0 < min_agreement <= 1:
            raise ValueError("teacher: samples >= 1 and min_agreement in (0, 1] needed, "
                             f"got {samples}, {min_agreement}")
        self.url, self.model, self.task = url.rstrip("/"), model, task
        self.samples, self.min_agreement = samples, min_agreement
        self.temperature, self.max_tokens = temperature, max_tokens
        self.question_prompt, self.solve_prompt = question_prompt, solve_prompt  # with {question} (and {format})
        key = os.environ.get(api_key_env) if api_key_env else None
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"} if key else {})
        self.rejected = Counter()  # questions dropped before vetting: no_answer_agreement, empty_question

    def _complete(self, prompt: str, n: int, seed: int, stop: list[str] | None = None) -> list[str]:
        payload = {"model": self.model, "prompt": prompt, "n": n, "temperature": self.temperature,
                   "max_tokens": self.max_tokens, "seed": seed & 0x7FFFFFFF}
        if stop:
            payload["stop"] = stop
        response = self.client.post(f"{self.url}/v1/completions", json=payload)
        if response.status_code != 200:
            raise RuntimeError(f"teacher {self.url} answered {response.status_code}: {response.text[:300]}")
        return [c.get("text", "") for c in sorted(response.json()["choices"], key=lambda c: c["index"])]

    def generate(self, seeds: pl.DataFrame, per_seed: int, *, seed: int, tag: str) -> pl.DataFrame:
        rows = []
        for i, (seed_id, question) in enumerate(zip(seeds["id"], seeds["question"])):
            asked = self._complete(self.question_prompt.format(question=question), per_seed, seed + i, stop=["\n\n"])
            for j, new in enumerate(q.strip() for q in asked):
                if not new:
                    self.rejected["empty_question"] += 1
                    continue
                prompt = self.solve_prompt.format(format=ANSWER_FORMAT.get(self.task, ""), question=new)
                solutions = self._complete(prompt, self.samples, seed + 7919 * (i + 1) + j)
                answers = [extract_answer(s, self.task) for s in solutions]
                counted = Counter(a for a in answers if a is not None)
                if not counted:
                    self.rejected["no_answer_agreement"] += 1
                    continue
                answer, votes = counted.most_common(1)[0]
                if votes / self.samples < self.min_agreement:
                    self.rejected["no_answer_agreement"] += 1
                    continue
                solution = next(s for s, a in zip(solutions, answers) if a == answer).strip()
                rows.append({"id": f"{tag}-{seed_id}-{j}", "seed_id": seed_id, "question": new, "solution": solution,
                             "answer": answer, "teacher_agreement": votes / self.samples})
        schema = {"id": pl.String, "seed_id": pl.String, "question": pl.String, "solution": pl.String,
                  "answer": pl.String, "teacher_agreement": pl.Float64}
        return pl.DataFrame(rows, schema=schema)
