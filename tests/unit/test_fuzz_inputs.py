"""Fuzzing (hypothesis) of the input surfaces: the graders take any text a model or a file can hold and either
grade it or call it unparseable, never crash; config overrides and config files of any shape either build a config
or fail with the documented validation error naming the field (or file and line); JSONL, CSV and Parquet rows of
any shape (wrong types, missing or extra fields, huge fields, invalid UTF-8, duplicate ids, a file cut short) load
as valid rows or fail naming the file, line and field."""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loop.config import build_config, parse_override
from loop.grading import extract_answer, grade_many

# Text a completion may hold: unicode (digits of other scripts included), LaTeX fragments, unbalanced braces,
# several \boxed{}, the answer markers.
FRAGMENTS = st.sampled_from(["\\boxed{", "}", "{", "\\frac{1}{2}", "#### ", "The answer is ", "\\sqrt{", "$",
                             "\\dfrac", "٣", "७", "１２", "\n", "\\left(", "\\right)", ",", "-", "\\boxed{3}",
                             "\\boxed{\\boxed{", "FINAL ANSWER:", "\x00", "\ud7ff", "1e309", "0.5", "∞"])
TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=12)), max_size=12).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completions=st.lists(TEXT, min_size=1, max_size=6), reference=TEXT,
       task=st.sampled_from(["embedded", "gsm8k", "math"]))
def test_graders_grade_any_text(completions, reference, task):
    grades = grade_many(completions, [reference] * len(completions), task)
    assert len(grades) == len(completions)
    for completion, g in zip(completions, grades):
        assert isinstance(g.correct, bool) and isinstance(g.parsed, bool)
        assert not g.correct or g.parsed  # a correct answer was parsed
        answer = extract_answer(completion, task)
        assert answer is None or isinstance(answer, str)


KEYS = st.sampled_from(["seeds", "train.epochs", "train.learning_rate", "dynamics.tau", "dynamics.floor_scale",
                        "selection.budgets", "selection.strategies", "data.n_seeds", "sampling.top_p",
                        "analysis.runs", "analysis.robustness.bins", "evaluation.n_samples", "no.such.key", "name"])
VALUES = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(
    alphabet=string.printable, max_size=20), st.lists(st.integers(-3, 50), max_size=4), st.just("auto"),
    st.just("[{learning_rate: 0.001, epochs: 0}]"), st.just("{name: x}"))


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=4))
def test_any_override_builds_a_config_or_names_what_is_wrong(pairs):
    overrides = [f"{key}={value}" for key, value in pairs]
    try:
        build_config("smoke", overrides=overrides)
    except ValidationError as err:
        assert err.errors() and all(e.get("loc") is not None for e in err.errors())
    except ValueError as err:  # yaml-level or cross-field checks, with a message
        assert str(err)


def test_an_override_needs_a_key_and_a_value():
    with pytest.raises(ValueError, match="key.sub=value"):
        parse_override("train.epochs")


@settings(max_examples=60, deadline=None)
@given(content=st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode)))
def test_any_config_file_builds_or_names_the_file(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "mine.yaml"
    path.write_bytes(content)
    try:
        build_config(config_file=path)
    except ValidationError as err:
        assert err.errors()
    except ValueError as err:
        assert str(path) in str(err) or "config" in str(err)


def test_a_yaml_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: [1, 2\nseeds: [0]\n")
    with pytest.raises(ValueError, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        build_config(config_file=path)


VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                  st.text(min_size=5000, max_size=6000), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
RECORD = st.dictionaries(st.sampled_from(["q", "sol", "ans", "id", "extra"]), VALUE, max_size=5)
LINE = st.one_of(RECORD.map(lambda r: __import__("json").dumps(r).encode()), st.binary(max_size=40),
                 st.just(b"\xff\xfe not utf-8"), st.just(b'{"q": "dup", "sol": "#### 1", "id": "same"}'))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=8))
def test_any_jsonl_file_loads_row_by_row_or_names_file_line_and_field(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("rows") / "mine.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    _check_loads_or_names(path, {"question": "q", "solution": "sol", "answer": "ans", "id": "id"})


CELL = st.one_of(st.text(max_size=30), st.text(alphabet=",\"\n\r\t ;#", max_size=12),
                 st.integers(5000, 6000).map(lambda n: "What is 1 + 1? " * (n // 15)),  # a huge field
                 st.sampled_from(["#### 7", "dup", "", "١٢٣"]))
HEADER = st.lists(st.sampled_from(["q", "sol", "ans", "id", "extra", ""]), min_size=1, max_size=5)


def _check_loads_or_names(path, mapping):
    """load_file then validate_examples: a frame of valid rows, or an error naming the file (and line or field)."""
    from loop.data.sources.files import load_file
    from loop.data.validation import DataValidationError, validate_examples

    try:
        frame = load_file(path, mapping, split="pool", task="gsm8k")
    except ValueError as err:
        assert str(path) in str(err)
        return
    try:
        valid, report = validate_examples(frame, str(path), task="gsm8k")
    except DataValidationError as err:
        text = str(err)
        assert str(path) in text and ("line" in text or "field" in text or "column" in text)
        return
    assert valid.height == report.n_valid


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=HEADER, rows=st.lists(st.lists(CELL, max_size=6), min_size=1, max_size=6),
       garble=st.one_of(st.none(), st.binary(min_size=1, max_size=8)))
def test_any_csv_file_loads_row_by_row_or_names_file_line_and_field(tmp_path_factory, header, rows, garble):
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)  # rows of any length: too few or too many fields for the header
    data = buffer.getvalue().encode()
    if garble is not None:  # bytes that need not be UTF-8, in the middle of the file
        data = data[: len(data) // 2] + garble + data[len(data) // 2:]
    path = tmp_path_factory.mktemp("rows") / "mine.csv"
    path.write_bytes(data)
    _check_loads_or_names(path, {"question": "q", "solution": "sol", "answer": "ans", "id": "id"})


COLUMN = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=20)), min_size=3, max_size=3),
    st.lists(st.integers(-5, 5), min_size=3, max_size=3),
    st.lists(st.floats(allow_nan=True), min_size=3, max_size=3),
    st.lists(st.lists(st.integers(0, 3), max_size=2), min_size=3, max_size=3),
    st.lists(st.fixed_dictionaries({"a": st.integers(0, 3)}), min_size=3, max_size=3),
    st.just(["dup", "dup", "dup"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns=st.dictionaries(st.sampled_from(["q", "sol", "ans", "id", "extra"]), COLUMN, max_size=5),
       damage=st.one_of(st.none(), st.integers(0, 200)))
def test_any_parquet_file_loads_or_names_file_and_field(tmp_path_factory, columns, damage):
    """Columns of any type (numbers, lists, structs where text belongs), nulls, duplicate ids, or a file cut short."""
    import polars as pl

    path = tmp_path_factory.mktemp("rows") / "mine.parquet"
    pl.DataFrame(columns or {"extra": [1, 2, 3]}, strict=False).write_parquet(path)
    if damage is not None:
        path.write_bytes(path.read_bytes()[:damage])
    _check_loads_or_names(path, {"question": "q", "solution": "sol", "answer": "ans", "id": "id"})
