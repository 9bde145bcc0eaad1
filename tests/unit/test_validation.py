"""Row validation (file:line:field errors, skip_invalid counts) and the contamination check, on
small hand-made files and, where present, on ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from loop.schema import EXAMPLE_SCHEMA
from loop.data.contamination import (
    ContaminationError,
    assert_no_contamination,
    check_contamination,
    remove_contaminated,
)
from loop.data.sources import load_file, load_gsm8k, load_math
from loop.data.validation import DataValidationError, validate_examples

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MAPPING = {"question": "question", "solution": "solution", "id": "id"}


def _bad_jsonl(tmp_path: Path) -> Path:
    rows = [
        {"id": "a", "question": "1+1?", "solution": "#### 2"},
        {"id": "b", "question": "   ", "solution": "#### 3"},  # line 2: empty question
        '{"id": "c", "question": "broken',  # line 3: not JSON
        {"id": "a", "question": "2+2?", "solution": "#### 4"},  # line 4: duplicate id
        {"id": "d", "question": "3+3?", "solution": "six, I think"},  # line 5: no final answer
        {"id": "e", "question": "4+4?", "solution": "#### 8"},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_every_bad_row_is_named_with_file_line_and_field(tmp_path):
    path = _bad_jsonl(tmp_path)
    df = load_file(path, MAPPING, task="gsm8k")
    with pytest.raises(DataValidationError) as caught:
        validate_examples(df, "bad.jsonl", task="gsm8k")
    message = str(caught.value)
    assert f"{path}:2: field 'question' is empty" in message
    assert f"{path}:3: field '<row>' could not be parsed: invalid JSON" in message
    assert f"{path}:4: field 'id' repeats id 'a' of {path}:1" in message
    assert f"{path}:5: field 'solution' has no final answer the 'gsm8k' grader can extract" in message
    assert "skip_invalid=True" in message
    assert [(p.line, p.kind) for p in caught.value.problems] == [
        (2, "empty"),
        (3, "parse"),
        (4, "duplicate_id"),
        (5, "no_answer"),
    ]


def test_skip_invalid_drops_and_counts(tmp_path):
    df = load_file(_bad_jsonl(tmp_path), MAPPING, task="gsm8k")
    clean, report = validate_examples(df, "bad.jsonl", skip_invalid=True, task="gsm8k")
    assert clean["id"].to_list() == ["a", "e"]
    assert clean.columns == [*EXAMPLE_SCHEMA, "source"]  # provenance columns dropped
    assert (report.n_rows, report.n_valid, report.skipped) == (6, 2, 4)
    assert report.counts == {"empty": 1, "parse": 1, "duplicate_id": 1, "no_answer": 1}
    assert "4 invalid" in str(report) and "4 skipped" in str(report)


def test_without_a_task_a_missing_answer_is_an_empty_field(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,question,solution,answer\nx,q1,s1,1\ny,q2,s2,\nz,q3,s3\n")
    df = load_file(path, {**MAPPING, "answer": "answer"})
    with pytest.raises(DataValidationError) as caught:
        validate_examples(df, "d.csv")
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3: field 'answer' is empty",
        f"{path}:4: field '<row>' could not be parsed: expected 4 fields, got 3",
    ]


def test_parquet_and_frames_name_rows(tmp_path):
    path = tmp_path / "d.parquet"
    pl.DataFrame({"id": ["a", "b"], "question": ["q", None], "solution": ["#### 1", "#### 2"]}).write_parquet(path)
    with pytest.raises(DataValidationError, match=r"d\.parquet row 2: field 'question' is empty"):
        validate_examples(load_file(path, MAPPING, task="gsm8k"), "d.parquet")
    # A frame built in code has no provenance columns: `source` and the 1-based row stand in.
    frame = pl.DataFrame(
        {"id": ["a"], "seed_id": [None], "question": ["q"], "solution": ["s"], "answer": ["1"], "split": ["train"]}
    )
    with pytest.raises(DataValidationError, match=r"mine row 1: field 'split' is 'train', expected one of"):
        validate_examples(frame, "mine")
    with pytest.raises(DataValidationError, match=r"mine: field 'split' is missing"):
        validate_examples(frame.drop("split"), "mine")


def test_seed_ids_must_name_a_seed():
    frame = pl.DataFrame(
        {
            "id": ["s1", "p1", "p2", "p3"],
            "seed_id": [None, "s1", "s9", None],
            "question": ["q"] * 4,
            "solution": ["s"] * 4,
            "answer": ["1"] * 4,
            "split": ["seed", "pool", "pool", "pool"],
        }
    )
    with pytest.raises(DataValidationError, match=r"frame row 3: field 'seed_id' names no seed: 's9'"):
        validate_examples(frame, "frame")
    pool = frame.filter(pl.col("split") == "pool")
    clean, report = validate_examples(pool, "pool", seed_ids={"s1", "s9"})
    assert clean.height == 3 and not report.problems
    _, report = validate_examples(pool, "pool", skip_invalid=True, seed_ids=["s1"])
    assert report.counts == {"unknown_seed": 1}


def _questions(ids, questions) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "question": questions})


def test_contamination_finds_exact_and_near_duplicates():
    long_q = (
        "A farmer has 17 cows and 23 sheep. Each cow eats 4 bales of hay per week and each sheep "
        "eats 1 bale per week. How many bales of hay does the farmer need for 6 weeks?"
    )
    train = _questions(
        ["t1", "t2", "t3"],
        [
            "What is 2 + 3?",
            long_q.replace("farmer", "rancher", 1),  # one word changed
            "Find the area of a triangle with base 7 and height 10.",
        ],
    )
    test = _questions(["x1", "x2", "x3"], ["  what IS 2 +\n3?", long_q, "How many primes are below 30?"])
    pairs = check_contamination(train, test)
    assert pairs.select("train_id", "test_id", "kind").rows() == [("t1", "x1", "exact"), ("t2", "x2", "near")]
    assert pairs["similarity"][0] == 1.0 and 0.9 <= pairs["similarity"][1] < 1.0
    assert check_contamination(train, test, near_threshold=0.999).height == 1
    with pytest.raises(ContaminationError, match=r"(?s)2 seed/pool questions overlap.*t1 ~ x1 \(exact.*t2 ~ x2 \(near"):
        assert_no_contamination(train, test)
    kept, dropped = remove_contaminated(train, test)
    assert kept["id"].to_list() == ["t3"] and dropped.height == 2
    assert_no_contamination(kept, test)
    assert check_contamination(train.head(0), test).height == 0


@pytest.mark.skipif(not (DATA / "gsm8k" / "train.jsonl").is_file(), reason="../shared/data absent")
def test_real_data_validation_and_contamination():
    gsm = load_gsm8k(DATA / "gsm8k")
    clean, report = validate_examples(gsm, "gsm8k", task="gsm8k")
    assert clean.height == 8792 and not report.problems
    split = clean.partition_by("split", as_dict=True)
    assert check_contamination(split[("seed",)], split[("test",)]).height == 0

    math = load_math(DATA / "math", levels=None)
    with pytest.raises(DataValidationError) as caught:
        validate_examples(math, "math", task="math")
    # The two published MATH train solutions whose \boxed{} is empty (train/number_theory/7115, 7117).
    assert [(Path(p.file).name, p.line, p.field) for p in caught.value.problems] == [
        ("train.jsonl", 5342, "solution"),
        ("train.jsonl", 5344, "solution"),
    ]
    math13, report = validate_examples(load_math(DATA / "math"), "math", task="math")
    assert not report.problems
    seeds, test = math13.filter(pl.col("split") == "seed"), math13.filter(pl.col("split") == "test")
    pairs = check_contamination(seeds, test)
    # MATH train and test share a few problems (same text, or the same template with other numbers).
    kinds = dict(pairs.group_by("kind").len().iter_rows())
    print(f"\nMATH levels 1-3 train/test overlap: {pairs.height} pairs ({kinds})")
    assert pairs.height > 0
