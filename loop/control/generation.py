"""New "similar but new" pool items for seeds whose unused items ran short, as the paper built its pool, and the
checks every generated item passes before it can be trained on.

A `Generator` makes candidate items for given seeds; `vet` keeps those that pass, in order:
1. verification: the item's own solution grades correct against its answer (the task's grader);
2. not contaminated: it shares no word n-gram (default 8) with a test or dev question (a copy of one included);
3. not a duplicate: its question (lower-cased, whitespace collapsed) is no question of the replicate's data or of an
   item generated before.
Every rejection is counted by reason. The embedded task's generator redraws the seed's numbers and phrasing (exact
answers by construction); `loop.control.teacher` asks a teacher model behind an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import re
from typing import Protocol

import numpy as np
import polars as pl

from loop.grading import grade_many
from loop.seeds import derived_seed
from loop.plugins import PluginRegistry

ITEM_COLUMNS = ("id", "seed_id", "question", "solution", "answer")


class Generator(Protocol):
    name: str

    def generate(self, seeds: pl.DataFrame, per_seed: int, *, seed: int, tag: str) -> pl.DataFrame:
        """Up to `per_seed` new items for each seed row (id, question, solution, answer); columns ITEM_COLUMNS
        (seed_id naming the seed) and any metadata; ids unique and prefixed by `tag`."""
        ...


class EmbeddedGenerator:
    """Siblings of an embedded-task seed: its spec (who, what, which operations) with new numbers and phrasing."""

    name = "embedded"

    def generate(self, seeds: pl.DataFrame, per_seed: int, *, seed: int, tag: str) -> pl.DataFrame:
        from loop.embedded.task import parse_problem, siblings

        rows = []
        for seed_id, question in zip(seeds["id"], seeds["question"]):
            problem = parse_problem(question)
            if problem is None:
                continue
            rng = np.random.default_rng(derived_seed("generate", seed, seed_id, tag))
            try:
                made = siblings(rng, problem, per_seed)
            except ValueError:  # the spec has fewer numberings left than asked
                continue
            for j, p in enumerate(made):
                rows.append({"id": f"{tag}-{seed_id}-{j}", "seed_id": seed_id, "question": p.question,
                             "solution": p.solution, "answer": p.answer, "steps": p.steps,
                             "style_floor": p.style_floor})
        schema = {"id": pl.String, "seed_id": pl.String, "question": pl.String, "solution": pl.String,
                  "answer": pl.String, "steps": pl.Int64, "style_floor": pl.Float64}
        return pl.DataFrame(rows, schema=schema)


# name -> factory(auto params, task) of a Generator; a third party adds one under curation_loop.generators
GENERATORS: PluginRegistry = PluginRegistry("generator", group="curation_loop.generators")


@GENERATORS.plugin("embedded")
def _embedded(auto, task: str):
    return EmbeddedGenerator()


@GENERATORS.plugin("teacher")
def _teacher(auto, task: str):
    from loop.control.teacher import TeacherGenerator

    if not auto.teacher_url or not auto.teacher_model:
        raise ValueError("strategy auto: generate teacher needs teacher_url and teacher_model")
    return TeacherGenerator(auto.teacher_url, auto.teacher_model, task, samples=auto.teacher_samples,
                            min_agreement=auto.teacher_min_agreement, api_key_env=auto.teacher_api_key_env)



def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of `text` (lower-cased, punctuation dropped)."""
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def vet(generated: pl.DataFrame, *, task: str, known_questions: list[str], held_out_questions: list[str],
        ngram: int = 8) -> tuple[pl.DataFrame, dict[str, int]]:
    """The generated items that pass verification, deduplication and the contamination check (module docstring),
    and the count of rejections per reason (failed_verification, duplicate, contaminated)."""
    counts = {"generated": generated.height, "failed_verification": 0, "duplicate": 0, "contaminated": 0}
    if not generated.height:
        return generated, counts | {"accepted": 0}
    grades = grade_many(generated["solution"].to_list(), generated["answer"].to_list(), task)
    seen = {_normalized(q) for q in known_questions}
    forbidden = set().union(*(ngrams(q, ngram) for q in held_out_questions)) if held_out_questions else set()
    keep = []
    for row, graded in zip(generated.iter_rows(named=True), grades):
        key = _normalized(row["question"])
        if not graded.correct:
            counts["failed_verification"] += 1
        elif ngrams(row["question"], ngram) & forbidden:
            counts["contaminated"] += 1
        elif key in seen:
            counts["duplicate"] += 1
        else:
            seen.add(key)  # two generated items may repeat each other
            keep.append(row["id"])
    accepted = generated.filter(pl.col("id").is_in(keep))
    return accepted, counts | {"accepted": accepted.height}
