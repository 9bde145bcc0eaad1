"""Validation of an Examples frame from any source (the contamination check is `loop.data.contamination`).

`validate_examples` finds every bad row at once: rows that failed to parse, missing or empty
fields, unknown splits, duplicate ids, reference solutions whose final answer cannot be
extracted, seed_ids naming no seed. It raises `DataValidationError` naming file, line and field
for each (the `_file`/`_line`/`_error` provenance columns of `loop.data.sources`), or, with
`skip_invalid`, drops those rows and counts them in its `ValidationReport`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from loop.grading import reference_answer
from loop.schema import EXAMPLE_SCHEMA, REQUIRED_TEXT_FIELDS, SPLITS
from loop.data.sources.files import LINE_FORMATS, PROVENANCE

# How many problems an error message lists before "and N more".
SHOWN = 20


@dataclass(frozen=True)
class Problem:
    """One bad row: where it is, which field, what is wrong."""

    file: str
    line: int | None
    field: str
    message: str
    kind: str

    def __str__(self) -> str:
        return f"{where(self.file, self.line)}: field '{self.field}' {self.message}"


def where(file: str, line: int | None) -> str:
    """`file:line` for line-based files (JSONL, CSV), `name row n` for Parquet and HF splits."""
    if line is None:
        return file
    return f"{file}:{line}" if file.lower().endswith(LINE_FORMATS) else f"{file} row {line}"


@dataclass
class ValidationReport:
    """What `validate_examples` found: rows in and kept, and each problem (kind: parse, empty,
    split, duplicate_id, no_answer, unknown_seed)."""

    source: str
    n_rows: int
    n_valid: int
    problems: list[Problem] = field(default_factory=list)
    skipped: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def __str__(self) -> str:
        head = f"{self.source}: {self.n_rows} rows, {self.n_valid} valid"
        if not self.problems:
            return head
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
        return f"{head}, {self.n_rows - self.n_valid} invalid ({kinds}); {self.skipped} skipped"


class DataValidationError(ValueError):
    """Invalid rows in a data source; `problems` lists them all, the message the first few."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        self.problems = report.problems
        lines = [str(p) for p in report.problems[:SHOWN]]
        more = len(report.problems) - len(lines)
        super().__init__(
            f"{report.source}: {len(report.problems)} invalid rows\n  "
            + "\n  ".join(lines)
            + (f"\n  ... and {more} more" if more else "")
            + "\nFix the data, or pass skip_invalid=True to skip these rows (they are counted)."
        )


def _blank(col: str) -> pl.Expr:
    return pl.col(col).is_null() | (pl.col(col).cast(pl.String).str.strip_chars() == "")


def validate_examples(
    df: pl.DataFrame,
    source: str,
    skip_invalid: bool = False,
    *,
    task: str | None = None,
    seed_ids: Collection[str] | None = None,
) -> tuple[pl.DataFrame, ValidationReport]:
    """Check an Examples frame; return it without the provenance columns, and a report.

    Reads id, seed_id, question, solution, answer, split and, when present, `_file`, `_line`,
    `_error` (loaders' provenance; `source` names the file when `_file` is absent). task: also
    require that `loop.grading.reference_answer(solution, task)` finds a final answer. seed_ids:
    ids a seed_id may name besides this frame's own seed rows; the seed_id check runs when either
    exists. Raises DataValidationError naming file, line and field of every bad row, unless
    skip_invalid, which drops them (duplicates after the first occurrence) and counts them.
    """
    missing = [c for c in EXAMPLE_SCHEMA if c not in df.columns]
    if missing:
        absent = [Problem(source, None, c, "is missing (no such column)", "empty") for c in missing]
        raise DataValidationError(ValidationReport(source, df.height, 0, absent))
    found = _Problems(source)
    t = _with_provenance(df, source)
    parsed = pl.col("_error").is_null()
    found.add(t.filter(~parsed), "<row>", "parse", lambda r: f"could not be parsed: {r['_error']}")
    ok = t.filter(parsed)
    _check_fields(ok, task, found)
    _check_ids(ok, seed_ids, found)

    report = ValidationReport(source, df.height, df.height, found.in_row_order())
    bad_rows = found.rows()
    report.n_valid = df.height - len(bad_rows)
    if bad_rows and not skip_invalid:
        raise DataValidationError(report)
    report.skipped = len(bad_rows)
    keep = np.ones(df.height, dtype=bool)
    keep[bad_rows] = False
    clean = df.filter(pl.Series(keep)).drop([c for c in PROVENANCE if c in df.columns])
    return clean.with_columns([pl.col(c).cast(dt) for c, dt in EXAMPLE_SCHEMA.items()]), report


class _Problems:
    """The problems found so far, each with the frame row it is on (for the report's order and the rows dropped)."""

    def __init__(self, source: str):
        self.source = source
        self.found: list[tuple[int, Problem]] = []

    def add(self, rows: pl.DataFrame, field: str, kind: str, message) -> None:
        for r in rows.iter_rows(named=True):
            text = message(r) if callable(message) else message
            self.found.append((r["_row"], Problem(r["_file"] or self.source, r["_line"], field, text, kind)))

    def in_row_order(self) -> list[Problem]:
        return [p for _, p in sorted(self.found, key=lambda rp: rp[0])]

    def rows(self) -> list[int]:
        return sorted({r for r, _ in self.found})


def _with_provenance(df: pl.DataFrame, source: str) -> pl.DataFrame:
    """`df` with its row index and the loaders' provenance columns (`_file`, `_line`, `_error`), filled in where a
    loader gave none: the file is `source`, the line the row's 1-based position, no parse error."""
    t = df.with_row_index("_row")
    if "_file" not in t.columns:
        t = t.with_columns(_file=pl.lit(source, pl.String))
    if "_line" not in t.columns:
        t = t.with_columns(_line=(pl.col("_row") + 1).cast(pl.Int64))
    if "_error" not in t.columns:
        t = t.with_columns(_error=pl.lit(None, pl.String))
    return t


def _check_fields(ok: pl.DataFrame, task: str | None, found: _Problems) -> None:
    """Each parsed row's own fields: a final answer in the solution (with a task), no empty text, a known split."""
    no_answer = pl.lit(False)
    if task is not None:
        # Reference solutions must end in a final answer the grader can find: the model learns it.
        extracted = ok["solution"].map_elements(lambda s: reference_answer(s, task), return_dtype=pl.String)
        ok = ok.with_columns(_ref=extracted)
        no_answer = ~_blank("solution") & pl.col("_ref").is_null()
        found.add(ok.filter(no_answer), "solution", "no_answer", f"has no final answer the {task!r} grader can extract")
    for col in REQUIRED_TEXT_FIELDS:
        # An answer that is empty because it could not be extracted is reported once, above.
        blank = _blank(col) & ~no_answer if col == "answer" else _blank(col)
        found.add(ok.filter(blank), col, "empty", "is empty")
    bad_split = ~_blank("split") & ~pl.col("split").is_in(SPLITS)
    found.add(ok.filter(bad_split), "split", "split", lambda r: f"is {r['split']!r}, expected one of {SPLITS}")


def _check_ids(ok: pl.DataFrame, seed_ids: Collection[str] | None, found: _Problems) -> None:
    """Across rows: an id repeated after its first row, and a seed_id that names no seed (of this frame's seed rows
    or `seed_ids`)."""
    first = (
        ok.filter(~_blank("id"))
        .group_by("id", maintain_order=True)
        .agg(_f0=pl.col("_file").first(), _l0=pl.col("_line").first(), _r0=pl.col("_row").first())
    )
    dups = ok.join(first, on="id").filter(pl.col("_row") != pl.col("_r0"))
    found.add(dups, "id", "duplicate_id", lambda r: f"repeats id {r['id']!r} of {where(r['_f0'], r['_l0'])}")
    known = set(seed_ids or ()) | set(ok.filter(pl.col("split") == "seed")["id"].drop_nulls().to_list())
    if known or seed_ids is not None:
        unknown = ok.filter(pl.col("seed_id").is_not_null() & ~pl.col("seed_id").is_in(list(known)))
        found.add(unknown, "seed_id", "unknown_seed", lambda r: f"names no seed: {r['seed_id']!r}")
