"""Loaders (JSONL, CSV, Parquet, HF, GSM8K, MATH) and seed linking, on small hand-made files and,
where present, on ../shared/data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from loop.schema import EXAMPLE_SCHEMA
from loop.data.linking import link_by_question, link_pool, link_to_nearest_seed
from loop.data.sources import (
    ColumnMapping,
    load_file,
    load_gsm8k,
    load_hf,
    load_math,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[2]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_with_mapping_extracts_answers_and_numbers_lines(tmp_path):
    path = _write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"q": "1+1?", "sol": "1+1=2\n#### 2", "lvl": "Level 2"},
            "",  # a blank line is not a row, but it counts for line numbers
            "{not json",
            {"q": "2+3?", "sol": "The answer is 5", "lvl": 4},
            [1, 2],
        ],
    )
    df = load_file(path, {"question": "q", "solution": "sol", "level": "lvl"}, split="pool", task="gsm8k")
    assert set(EXAMPLE_SCHEMA) <= set(df.columns)
    assert df["id"].to_list() == ["mine-000001", "mine-000002", "mine-000003", "mine-000004"]
    assert df["_line"].to_list() == [1, 3, 4, 5]
    assert df["answer"].to_list() == ["2", None, "5", None]
    assert df["level"].to_list() == [2, None, 4, None]
    assert df["split"].unique().to_list() == ["pool"]
    errors = df["_error"].to_list()
    assert errors[0] is None and errors[2] is None
    assert errors[1].startswith("invalid JSON") and errors[3] == "not a JSON object but list"
    assert df["_file"][0] == str(path) and df["source"][0] == "mine"


def test_mapped_answer_and_id_columns_are_used_as_text(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"key": 7, "question": "q", "solution": "s", "ans": 12}])
    df = load_file(path, ColumnMapping(answer="ans", id="key"))
    assert df.select("id", "answer").row(0) == ("7", "12")


def test_csv_lines_follow_quoted_newlines_and_flag_short_rows(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('question,solution\n"two\nlines",#### 1\nshort row\nq3,#### 3\n')
    df = load_file(path, None, task="gsm8k")
    assert df["_line"].to_list() == [2, 4, 5]
    assert df["question"][0] == "two\nlines"
    assert df["_error"].to_list() == [None, "expected 2 fields, got 1", None]
    assert df["answer"].to_list() == ["1", None, "3"]


def test_parquet_rows_are_numbered(tmp_path):
    path = tmp_path / "d.parquet"
    pl.DataFrame({"problem": ["a", "b"], "solution": [r"$\boxed{1}$", r"$\boxed{\frac{1}{2}}$"]}).write_parquet(path)
    df = load_file(path, {"question": "problem"}, task="math")
    assert df["_line"].to_list() == [1, 2]
    assert df["answer"].to_list() == ["1", r"\frac{1}{2}"]


def test_mapping_errors_name_the_file_and_columns(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"problem": "q", "solution": "s"}])
    with pytest.raises(ValueError, match=r"d\.jsonl: mapped columns not found: 'question' \(for question\)"):
        load_file(path, {})
    with pytest.raises(ValueError, match="unknown column mapping keys"):
        load_file(path, {"prompt": "problem"})
    other = tmp_path / "d.xlsx"
    other.write_text("x")
    with pytest.raises(ValueError, match="unsupported data file type"):
        load_file(other, {})
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_file(tmp_path / "nope.jsonl", {})


def _frame(ids, questions, seed_ids=None, **extra) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "id": ids,
            "seed_id": seed_ids or [None] * n,
            "question": questions,
            "solution": ["s"] * n,
            "answer": ["1"] * n,
            "split": ["pool"] * n,
            **extra,
        },
        schema_overrides={"seed_id": pl.String},
    )


SEEDS = _frame(
    ["s1", "s2", "s3"],
    [
        "Tom has 3 apples and buys 5 more apples. How many apples does Tom have?",
        "A train travels 60 miles per hour for 3 hours. How far does the train travel?",
        "What is the area of a circle with radius 4?",
    ],
).with_columns(split=pl.lit("seed"))


def test_link_by_question_uses_normalised_equality():
    pool = _frame(
        ["p1", "p2", "p3"],
        ["rephrased 1", "rephrased 2", "rephrased 3"],
        seed_ids=[None, None, "s3"],
        seed_question=[
            "  tom has 3 apples and buys 5 more apples.\nHow many apples does Tom have?",
            "A question no seed has",
            "What is the area of a circle with radius 4?",
        ],
    )
    linked = link_by_question(pool, SEEDS)
    assert linked["seed_id"].to_list() == ["s1", None, "s3"]
    assert linked.columns == pool.columns


def test_nearest_seed_fills_only_null_links():
    pool = _frame(
        ["p1", "p2", "p3", "p4"],
        [
            "A train travels 50 miles per hour for 4 hours. How far does it travel?",
            "Tom has 7 apples and buys 2 more apples. How many apples now?",
            "What is the area of a circle with radius 9?",
            "zzz qqq",
        ],
        seed_ids=[None, None, "s1", None],
    )
    for method in ("tfidf", "lsa"):
        linked = link_to_nearest_seed(pool, SEEDS, method=method)
        assert linked["seed_id"].to_list()[:3] == ["s2", "s1", "s1"], method  # p3 keeps its link
        sim = linked["link_similarity"].to_list()
        assert 0 < sim[0] <= 1 and 0 < sim[1] <= 1 and sim[2] is None
    tfidf = link_to_nearest_seed(pool, SEEDS)
    assert tfidf["seed_id"][3] is None and tfidf["link_similarity"][3] == 0.0  # shares no term
    with pytest.raises(ValueError, match="unknown linking method"):
        link_to_nearest_seed(pool, SEEDS, method="bert")


def test_link_pool_prefers_the_named_seed():
    pool = _frame(
        ["p1", "p2"],
        ["What is the area of a circle with radius 2?", "A train travels 10 miles per hour for 2 hours."],
        seed_question=["Tom has 3 apples and buys 5 more apples. How many apples does Tom have?", None],
    )
    linked = link_pool(pool, SEEDS)
    assert linked["seed_id"].to_list() == ["s1", "s2"]
    assert linked["link_similarity"][0] is None and linked["link_similarity"][1] > 0


def test_gsm8k_and_math_from_a_small_local_folder(tmp_path):
    gsm = tmp_path / "gsm"
    gsm.mkdir()
    train = [{"question": "q1", "answer": "a\n#### 3"}, {"question": "q2", "answer": "#### 1,200"}]
    _write_jsonl(gsm / "train.jsonl", train)
    _write_jsonl(gsm / "test.jsonl", [{"question": "q3", "answer": "#### 4"}])
    df = load_gsm8k(gsm, split_map={"train": "pool", "test": "test"})
    assert df.select("id", "answer", "split").rows() == [
        ("gsm8k-train-000001", "3", "pool"),
        ("gsm8k-train-000002", "1,200", "pool"),
        ("gsm8k-test-000001", "4", "test"),
    ]
    assert load_gsm8k(gsm, split_map={"train": "seed", "test": None})["split"].unique().to_list() == ["seed"]

    math = tmp_path / "math"
    math.mkdir()
    rows = [
        {"problem": f"p{n}", "level": f"Level {lvl}", "type": subject, "solution": rf"$\boxed{{{n}}}$",
         "unique_id": f"train/{subject.lower()}/{n}.json"}
        for n, lvl, subject in [(1, "1", "Algebra"), (2, "5", "Geometry"), (3, "?", "Geometry")]
    ]
    _write_jsonl(math / "train.jsonl", rows)
    _write_jsonl(math / "test.jsonl", [{**rows[0], "unique_id": "test/algebra/9.json"}])
    df = load_math(math)
    assert df.select("id", "level", "subject", "answer", "split").rows() == [
        ("math-train/algebra/1", 1, "Algebra", "1", "seed"),
        ("math-test/algebra/9", 1, "Algebra", "1", "test"),
    ]
    assert load_math(math, levels=None).height == 4  # "Level ?" kept, as a null level
    with pytest.raises(FileNotFoundError, match="no file for split 'dev'"):
        load_math(math, split_map={"dev": "dev"})


def test_hub_parquet_snapshot_layout(tmp_path):
    shard = tmp_path / "main" / "train-00000-of-00001.parquet"
    shard.parent.mkdir()
    pl.DataFrame({"question": ["q"], "answer": ["#### 9"]}).write_parquet(shard)
    df = load_gsm8k(tmp_path, split_map={"train": "seed"})
    assert df.select("answer", "_line").row(0) == ("9", 1)


def test_unreachable_hub_gives_a_clear_error(tmp_path):
    # A fresh process, offline, with an empty cache: as on a machine with no network.
    code = (
        "from loop.data.sources import load_gsm8k, load_hf, SourceUnavailableError\n"
        "for call in (lambda: load_gsm8k(), lambda: load_hf('someone/data', None, 'train', {})):\n"
        "    try:\n"
        "        call()\n"
        "    except SourceUnavailableError as err:\n"
        "        print('REFUSED', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    refused = [line for line in out.stdout.splitlines() if line.startswith("REFUSED")]
    assert len(refused) == 2, out.stdout
    assert "'openai/gsm8k'" in refused[0] and "pass its local folder as `path`" in refused[0]
    assert "'someone/data'" in refused[1]


def test_load_hf_through_a_packaged_builder(tmp_path):
    path = _write_jsonl(
        tmp_path / "meta.jsonl",
        [
            {"query": "Q1", "response": "so 4.\nThe answer is: 4", "original_question": "Seed one?"},
            {"query": "Q2", "response": "The answer is: 9", "original_question": "Seed two?"},
        ],
    )
    mapping = {"question": "query", "solution": "response", "seed_question": "original_question"}
    seeds = _frame(["s1"], ["seed  ONE?"])
    kwargs = {"data_files": str(path), "cache_dir": str(tmp_path / "cache")}
    df = load_hf("json", None, "train", mapping, task="gsm8k", seeds=seeds, **kwargs)
    assert df.select("id", "answer", "seed_question", "seed_id", "_line").rows() == [
        ("json-train-000001", "4", "Seed one?", "s1", 1),
        ("json-train-000002", "9", "Seed two?", None, 2),
    ]
    assert df["_file"][0] == "json/train"
    # The same file read directly links the same way.
    direct = load_file(path, mapping, task="gsm8k", seeds=seeds)
    assert direct["seed_id"].to_list() == ["s1", None]


@pytest.mark.skipif(not (DATA / "gsm8k" / "train.jsonl").is_file(), reason="../shared/data/gsm8k absent")
def test_real_gsm8k_folder():
    df = load_gsm8k(DATA / "gsm8k")
    counts = dict(df.group_by("split").len().iter_rows())
    assert counts == {"seed": 7473, "test": 1319}
    assert df["answer"].null_count() == 0 and df["id"].n_unique() == df.height
    assert df.filter(pl.col("id") == "gsm8k-train-000001")["answer"][0] == "72"  # Natalia's clips


@pytest.mark.skipif(not (DATA / "math" / "train.jsonl").is_file(), reason="../shared/data/math absent")
def test_real_math_folder_levels_1_to_3():
    df = load_math(DATA / "math")
    assert sorted(df["level"].unique().to_list()) == [1, 2, 3]
    counts = dict(df.group_by("split").len().iter_rows())
    assert counts == {"seed": 564 + 1348 + 1592, "test": 437 + 894 + 1131}
    assert df["id"].n_unique() == df.height and df["answer"].null_count() == 0
    assert set(df["subject"].unique()) >= {"Algebra", "Prealgebra", "Number Theory", "Geometry"}
