"""A user's own JSONL, Parquet or CSV file as an Examples frame, through a column mapping.

Loaders never stop at a bad row: a line that fails to parse becomes a row whose `_error` says
why, so `loop.data.validation.validate_examples` can name file, line and field for every problem at
once (or skip and count them). Every frame built here carries three provenance columns next to
the Examples columns: `_file` (the file or dataset it came from), `_line` (1-based line of a
JSONL/CSV file; 1-based row number of a Parquet file or HF split) and `_error`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import polars as pl

from loop.grading import reference_answer
from loop.data.linking import link_by_question

PROVENANCE = ("_file", "_line", "_error")
# Extensions read line by line, so that `_line` is a line number in the file.
LINE_FORMATS = (".jsonl", ".ndjson", ".csv", ".tsv")


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column feeds which Examples column.

    question, solution: required. answer: None extracts it from the solution with
    `loop.grading.reference_answer`. id: None numbers rows `{prefix}-{n:06d}` in file order.
    seed_id: a column naming the seed's id. seed_question: a column holding the seed's question
    text (MetaMathQA's `original_question`), kept as `seed_question` for
    `loop.data.linking.link_by_question`. level, subject: optional metadata.
    """

    question: str = "question"
    solution: str = "solution"
    answer: str | None = None
    id: str | None = None
    seed_id: str | None = None
    seed_question: str | None = None
    level: str | None = None
    subject: str | None = None

    @classmethod
    def of(cls, mapping: ColumnMapping | Mapping[str, str | None] | None) -> ColumnMapping:
        """A ColumnMapping from itself, a dict (as in a config file) or None (the defaults)."""
        if mapping is None:
            return cls()
        if isinstance(mapping, ColumnMapping):
            return mapping
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"unknown column mapping keys {unknown}; expected some of {sorted(known)}")
        return cls(**dict(mapping))

    def source_columns(self) -> dict[str, str]:
        """{examples field: source column} for the fields that are mapped."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


def examples_from_table(
    table: pl.DataFrame,
    mapping: ColumnMapping | Mapping[str, str | None] | None,
    *,
    split: str,
    task: str,
    source: str,
    file: str,
    id_prefix: str,
) -> pl.DataFrame:
    """Map a raw table (source columns + `_line`, optional `_error`) onto the Examples columns.

    Writes id, seed_id, question, solution, answer, split, source, optional level (Int64, the
    first integer of the source value, so "Level 3" -> 3), subject and seed_question, and the
    provenance columns `_file`, `_line`, `_error`. Rows that failed to parse keep null fields.
    """
    m = ColumnMapping.of(mapping)
    cols = m.source_columns()
    missing = {k: c for k, c in cols.items() if c not in table.columns}
    if missing and table.height:
        found = [c for c in table.columns if not c.startswith("_")]
        raise ValueError(
            f"{file}: mapped columns not found: "
            + ", ".join(f"{c!r} (for {k})" for k, c in missing.items())
            + f"; the source has columns {found}"
        )

    def text(field: str) -> pl.Expr:
        col = cols.get(field)
        if col is None or col not in table.columns:
            return pl.lit(None, dtype=pl.String)
        return pl.col(col).cast(pl.String)

    n = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    out = table.select(
        id=text("id") if m.id else pl.format("{}-{}", pl.lit(id_prefix), n.cast(pl.String).str.zfill(6)),
        seed_id=text("seed_id"),
        question=text("question"),
        solution=text("solution"),
        answer=text("answer"),
        split=pl.lit(split, dtype=pl.String),
        source=pl.lit(source, dtype=pl.String),
        **({"level": text("level").str.extract(r"(\d+)").cast(pl.Int64)} if m.level else {}),
        **({"subject": text("subject")} if m.subject else {}),
        **({"seed_question": text("seed_question")} if m.seed_question else {}),
        _file=pl.lit(file, dtype=pl.String),
        _line=pl.col("_line").cast(pl.Int64),
        _error=pl.col("_error").cast(pl.String) if "_error" in table.columns else pl.lit(None, pl.String),
    )
    if m.answer is None:
        # The answer graded against is the one the reference solution itself ends with.
        out = out.with_columns(
            answer=pl.col("solution").map_elements(
                lambda s: reference_answer(s, task), return_dtype=pl.String
            )
        )
    return out


def _read_jsonl(path: Path) -> pl.DataFrame:
    rows: list[dict] = []
    with path.open("rb") as fh:  # bytes: a line that is not UTF-8 is a bad row, not a failed file
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                rows.append({"_line": line_no, "_error": f"not UTF-8 text (byte {err.start + 1})"})
                continue
            if not line.strip():
                continue  # blank lines (a trailing newline) are not rows
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                rows.append({"_line": line_no, "_error": f"invalid JSON ({err.msg}, column {err.colno})"})
                continue
            if not isinstance(record, dict):
                rows.append({"_line": line_no, "_error": f"not a JSON object but {type(record).__name__}"})
                continue
            rows.append({**_scalars(record), "_line": line_no, "_error": None})
    return _table(rows)


def _scalars(record: dict) -> dict[str, str | None]:
    # Every value as text: mixed types across lines (an int answer here, a str there) are common.
    return {
        k: None if v is None else v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        for k, v in record.items()
    }


def _read_csv(path: Path, delimiter: str) -> pl.DataFrame:
    rows: list[dict] = []
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:  # csv reads the file as one text: name where it stops being UTF-8
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {err.start + 1} of the file)") from None
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        last = reader.line_num
        for record in reader:
            start, last = last + 1, reader.line_num  # a quoted field may span lines
            extra = record.pop(None, None)
            n_fields = len(header) - sum(v is None for v in record.values()) + len(extra or [])
            error = None if n_fields == len(header) else f"expected {len(header)} fields, got {n_fields}"
            rows.append({**record, "_line": start, "_error": error})
    return _table(rows)


def _table(rows: list[dict]) -> pl.DataFrame:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    schema = {k: pl.Int64 if k == "_line" else pl.String for k in keys} or {"_line": pl.Int64, "_error": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _read_parquet(path: Path) -> pl.DataFrame:
    """A Parquet file's rows; nested values (lists, structs) become JSON text, as in a JSONL file, so that the
    validation names the row and field they do not fit."""
    try:
        table = pl.read_parquet(path)
    except Exception as err:  # polars raises its own errors for truncated or foreign bytes
        raise ValueError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0][:200]})") from None
    nested = [name for name, dtype in table.schema.items() if dtype.is_nested()]
    return table.with_columns(
        pl.Series(name, [None if v is None else json.dumps(v, default=str) for v in table[name].to_list()],
                  dtype=pl.String) for name in nested)


def read_table(path: str | Path) -> pl.DataFrame:
    """Raw rows of a JSONL/NDJSON, CSV/TSV or Parquet file, with `_line` and `_error` columns."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(p)
    if suffix in (".csv", ".tsv"):
        return _read_csv(p, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        table = _read_parquet(p)
        return table.with_columns(_line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64), _error=pl.lit(None, pl.String))
    raise ValueError(f"{p}: unsupported data file type {suffix!r}; use .jsonl, .ndjson, .csv, .tsv or .parquet")


def load_file(
    path: str | Path,
    mapping: ColumnMapping | Mapping[str, str | None] | None = None,
    *,
    split: str = "pool",
    task: str = "math",
    source: str | None = None,
    id_prefix: str | None = None,
    seeds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Load a JSONL/NDJSON, CSV/TSV or Parquet file as an Examples frame (plus provenance columns).

    mapping: source columns for question, solution and optionally answer, id, seed_id,
    seed_question, level, subject (a ColumnMapping or a dict from a config). task: the grading
    task whose rule extracts the answer when no answer column is mapped ("gsm8k": "#### n" or
    "The answer is n"; "math": last \\boxed{} or "The answer is"). split: the split of every row.
    source, id_prefix: default to the file's stem. seeds: an Examples frame of seeds; with a
    mapped seed_question, rows get the seed_id of the seed with that question
    (`loop.data.linking.link_by_question`). Run `loop.data.validation.validate_examples` next.
    """
    p = Path(path)
    df = examples_from_table(
        read_table(p),
        mapping,
        split=split,
        task=task,
        source=source or p.stem,
        file=str(p),
        id_prefix=id_prefix or p.stem,
    )
    return df if seeds is None else link_by_question(df, seeds)
