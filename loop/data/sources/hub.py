"""GSM8K, MATH and any Hugging Face dataset as Examples frames, from the hub or a local folder.

The hub is reached through `datasets.load_dataset` (its cache works offline); a local folder holds
the same splits as files (`train.jsonl`, `test.jsonl`, as in ../shared/data, or the Parquet
files of a hub snapshot). When the hub cannot be reached and no path is given, the error says
so and how to pass a path. Frames carry the provenance columns of `loop.data.sources.files`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from loop.data.sources.files import ColumnMapping, examples_from_table, read_table
from loop.data.linking import link_by_question

GSM8K_HUB = ("openai/gsm8k", "main")
MATH_HUB = "EleutherAI/hendrycks_math"
# One hub config per MATH subject (the original competition_math repository is gone).
MATH_HUB_CONFIGS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
# Hub split -> loop split; a split mapped to None is not loaded.
DEFAULT_SPLIT_MAP: Mapping[str, str | None] = {"train": "seed", "test": "test"}

GSM8K_MAPPING = ColumnMapping(question="question", solution="answer")
MATH_MAPPING = ColumnMapping(question="problem", solution="solution", level="level", subject="type")


class SourceUnavailableError(RuntimeError):
    """A dataset could be found neither on the hub (or in its cache) nor at a local path."""


def _hub_split(name: str, config: str | None, split: str, **load_kwargs) -> pl.DataFrame:
    """One hub split as a polars table with `_line` (1-based row number; ds[i] is row i + 1)."""
    try:
        from datasets import load_dataset

        ds = load_dataset(name, config, split=split, **load_kwargs)
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, its own types
        raise SourceUnavailableError(
            f"could not load {name!r} (config {config!r}, split {split!r}) from the Hugging Face "
            f"hub or its cache: {type(err).__name__}: {err}. Without network access, download the "
            "dataset once elsewhere and pass its local folder as `path` (JSONL or Parquet files "
            "named after the splits, e.g. train.jsonl and test.jsonl)."
        ) from err
    table = ds.to_polars()
    return table.with_columns(_line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))


def _split_files(folder: Path, split: str) -> list[Path]:
    """Files of one split in a local folder: `{split}.jsonl|.ndjson|.csv|.parquet`, else the
    Parquet shards of a hub snapshot (`**/{split}-*.parquet`, `**/{split}/*.parquet`)."""
    for ext in (".jsonl", ".ndjson", ".csv", ".parquet"):
        if (folder / f"{split}{ext}").is_file():
            return [folder / f"{split}{ext}"]
    return sorted({*folder.glob(f"**/{split}-*.parquet"), *folder.glob(f"**/{split}/*.parquet")})


def _local_split(folder: str | Path, split: str) -> list[tuple[Path, pl.DataFrame]]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    files = _split_files(root, split)
    if not files:
        raise FileNotFoundError(
            f"{root}: no file for split {split!r} (looked for {split}.jsonl, {split}.ndjson, "
            f"{split}.csv, {split}.parquet and Parquet shards named {split}-*.parquet)"
        )
    return [(f, read_table(f)) for f in files]


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def load_gsm8k(
    path: str | Path | None = None, split_map: Mapping[str, str | None] = DEFAULT_SPLIT_MAP
) -> pl.DataFrame:
    """GSM8K (`openai/gsm8k`, config `main`) as an Examples frame, one block per mapped split.

    path: None loads from the hub (or its cache); a folder reads `train.jsonl`/`test.jsonl` (or
    the hub's Parquet files). split_map: hub split -> loop split (seed | pool | test | dev).
    Writes id (`gsm8k-{split}-{n:06d}`, n the 1-based row), question, solution (the reasoning with
    its final `#### n` line), answer (n, from the solution), split, source="gsm8k", seed_id null.
    """
    frames = []
    for hub_split, loop_split in split_map.items():
        if loop_split is None:
            continue
        parts = (
            [(Path(f"{GSM8K_HUB[0]}/{hub_split}"), _hub_split(*GSM8K_HUB, hub_split))]
            if path is None
            else _local_split(path, hub_split)
        )
        for i, (file, table) in enumerate(parts):
            frames.append(
                examples_from_table(
                    table,
                    GSM8K_MAPPING,
                    split=loop_split,
                    task="gsm8k",
                    source="gsm8k",
                    file=str(file),
                    id_prefix=f"gsm8k-{hub_split}" + (f"-{i}" if i else ""),
                )
            )
    return _concat(frames)


def _math_table(table: pl.DataFrame, file: str, hub_split: str, loop_split: str, tag: str) -> pl.DataFrame:
    mapping = MATH_MAPPING
    if "unique_id" in table.columns:
        # The published MATH files name each problem ("test/algebra/1.json"), as MATH-500 does.
        table = table.with_columns(_id=pl.format("math-{}", pl.col("unique_id").str.strip_suffix(".json")))
        mapping = ColumnMapping(**{**mapping.source_columns(), "id": "_id"})
    return examples_from_table(
        table, mapping, split=loop_split, task="math", source="math", file=file, id_prefix=f"math-{hub_split}-{tag}"
    )


def load_math(
    path: str | Path | None = None,
    levels: Sequence[int] | None = (1, 2, 3),
    split_map: Mapping[str, str | None] = DEFAULT_SPLIT_MAP,
    hub_name: str = MATH_HUB,
) -> pl.DataFrame:
    """Hendrycks MATH as an Examples frame, restricted to `levels` (None keeps all, "Level ?" too).

    path: None loads the seven subject configs of `hub_name` from the hub (or its cache); a
    folder reads `train.jsonl`/`test.jsonl` (fields problem, level, type, solution, unique_id).
    Writes id (`math-{unique_id}` when the files have one, else `math-{split}-{subject}-{n:06d}`),
    question, solution, answer (last \\boxed{} of the solution), split, level (Int64, from
    "Level n"), subject (the MATH `type`), source="math", seed_id null.
    """
    frames = []
    for hub_split, loop_split in split_map.items():
        if loop_split is None:
            continue
        if path is None:
            for config in MATH_HUB_CONFIGS:
                table = _hub_split(hub_name, config, hub_split)
                frames.append(_math_table(table, f"{hub_name}/{config}/{hub_split}", hub_split, loop_split, config))
        else:
            for file, table in _local_split(path, hub_split):
                tag = file.parent.name if file.stem != hub_split else "all"
                frames.append(_math_table(table, str(file), hub_split, loop_split, tag))
    out = _concat(frames)
    if levels is not None and out.height:
        out = out.filter(pl.col("level").is_in(list(levels)) | pl.col("_error").is_not_null())
    return out


def load_hf(
    name: str,
    config: str | None,
    split: str,
    mapping: ColumnMapping | Mapping[str, str | None] | None = None,
    *,
    as_split: str = "pool",
    task: str = "math",
    seeds: pl.DataFrame | None = None,
    **load_kwargs,
) -> pl.DataFrame:
    """Any Hugging Face dataset split as an Examples frame, through a column mapping.

    mapping, task: as for `loop.data.sources.files.load_file` (e.g. MetaMathQA: question="query",
    solution="response", seed_question="original_question"; with `seeds` given, each row gets the
    seed_id of the seed whose question is its original_question). as_split: the loop split of every
    row. `_line` is the 1-based row number (ds[i] is row i + 1). load_kwargs go to
    `datasets.load_dataset` (revision, data_files for its packaged "json"/"csv"/"parquet"
    builders, cache_dir, ...). Raises SourceUnavailableError when neither the hub nor its cache
    has the dataset.
    """
    table = _hub_split(name, config, split, **load_kwargs)
    label = f"{name}/{config}/{split}" if config else f"{name}/{split}"
    df = examples_from_table(
        table,
        mapping,
        split=as_split,
        task=task,
        source=name,
        file=label,
        id_prefix=f"{name.replace('/', '-')}-{split}",
    )
    return df if seeds is None else link_by_question(df, seeds)
