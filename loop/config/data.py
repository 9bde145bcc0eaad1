"""The data section: which source, which of its splits feed the roles seed/pool/dev/test, how many rows,
how pool items link to seeds, and the per-source field policy (a field a source does not read is an error)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from loop.config.base import Strict


DataSource = Literal["embedded", "gsm8k", "math", "file", "hf"]
ROLES = ("seed", "pool", "dev", "test")

# The fields each source reads. A field given for a source that does not read it is an error (a typo or a
# leftover from another preset would otherwise be ignored silently), and a dumped config carries only these,
# so an embedded run's stored config is the same as before real sources existed.
_EMBEDDED_FIELDS = ("n_seeds", "pool_per_seed", "n_dev", "n_test", "min_steps", "max_steps")
_REAL_FIELDS = ("splits", "pool", "link", "seed_limit", "pool_limit", "dev_limit", "test_limit",
                "skip_invalid", "contamination", "near_duplicate_threshold")
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "embedded": ("source", *_EMBEDDED_FIELDS, "data_seed", "per_replicate"),
    "gsm8k": ("source", "path", *_REAL_FIELDS, "data_seed", "per_replicate"),
    "math": ("source", "path", "name", "levels", *_REAL_FIELDS, "data_seed", "per_replicate"),
    "file": ("source", "path", "columns", *_REAL_FIELDS, "data_seed", "per_replicate"),
    "hf": ("source", "name", "config", "revision", "columns", *_REAL_FIELDS, "data_seed", "per_replicate"),
}
# The grading task each dataset's answers follow; a user's file or HF dataset may follow any.
SOURCE_TASK = {"embedded": "embedded", "gsm8k": "gsm8k", "math": "math"}


class ColumnsConfig(Strict):
    """Which column of a user's file or HF dataset feeds which Examples field (`loop.data.sources.ColumnMapping`)."""

    question: str = "question"
    solution: str = Field("solution", description="the reference solution, ending in its final answer")
    answer: str | None = Field(None, description="null = extracted from the solution by the task's grader")
    id: str | None = Field(None, description="null = rows numbered {file stem}-{n:06d} in file order")
    seed_id: str | None = Field(None, description="pool only: the id of the seed the row was derived from")
    seed_question: str | None = Field(
        None, description="pool only: the seed's question text (MetaMathQA: original_question); linked by equality")
    level: str | None = None
    subject: str | None = None


class SplitsConfig(Strict):
    """Which split of the source feeds each role. Roles naming the same split share its rows: they are
    shuffled once (data.data_seed) and cut in the order test, dev, seed, pool, each role taking its
    `*_limit` rows, the last one the rest. A split is a hub split (`train`), a local file named after it
    (`train.jsonl`, `.ndjson`, `.csv`, `.parquet`, or Parquet shards `train-*.parquet`) or, for
    source `file`, a file name (`mine.csv`)."""

    seed: str = "train"
    pool: str | None = Field(None, description="null = the pool comes from data.pool (a second source)")
    dev: str | None = Field(None, description="threshold calibration split; null = none")
    test: str = "test"

    @field_validator("seed", "pool", "dev", "test")
    @classmethod
    def _not_blank(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"data.splits.{info.field_name} must name a split, got an empty string")
        return value


class PoolSourceConfig(Strict):
    """A pool from a second source, whose rows may name their seed (seed_id or seed_question columns).

    Rows naming a seed outside the seed set (a sliced one, or another dataset's, as MetaMathQA's MATH rows
    for GSM8K seeds) are dropped and counted; rows naming no seed are linked by `data.link` or left unlinked.
    """

    source: Literal["file", "hf"]
    path: str | None = Field(None, description="file: a JSONL, CSV/TSV or Parquet file")
    name: str | None = Field(None, description="hf: dataset name, e.g. meta-math/MetaMathQA")
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: ColumnsConfig = ColumnsConfig()

    @model_validator(mode="after")
    def _fields_fit_source(self) -> PoolSourceConfig:
        if self.source == "file":
            if not self.path:
                raise ValueError("data.pool.path is required for a pool from a file")
            given = [f for f in ("name", "config", "revision") if getattr(self, f) is not None]
            if given:
                raise ValueError(f"data.pool.{given[0]} applies to source 'hf' only; a file pool reads data.pool.path")
        else:
            if not self.name:
                raise ValueError("data.pool.name (the Hugging Face dataset) is required for a pool from 'hf'")
            if self.path is not None:
                raise ValueError("data.pool.path applies to source 'file' only; an 'hf' pool reads data.pool.name")
        return self


class DataConfig(Strict):
    """Where examples come from, which split plays which role, and how they are checked before any training.

    source: `embedded` (the synthetic task shipped as code, no download), `gsm8k` (openai/gsm8k, config main),
    `math` (Hendrycks MATH, EleutherAI/hendrycks_math), `file` (a user's JSONL/CSV/Parquet files) or `hf` (any
    Hugging Face dataset). gsm8k and math read the hub (or its cache) unless `path` names a local folder.
    Only the fields of the chosen source may be given (see SOURCE_FIELDS).
    """

    source: DataSource = "embedded"
    # -- embedded ----------------------------------------------------------------------------------
    n_seeds: int = Field(64, gt=0, description="seed problems (the original training set)")
    pool_per_seed: int = Field(8, gt=0, description="pool items generated per seed (linked by seed_id)")
    n_dev: int = Field(64, ge=0, description="dev problems (threshold calibration, never the test set)")
    n_test: int = Field(200, gt=0, description="test problems")
    min_steps: int = Field(2, ge=1)
    max_steps: int = Field(5, ge=1)
    data_seed: int = Field(0, description="seed of the generated data set (embedded) or of the slices (others)")
    per_replicate: bool = Field(
        True, description="each paired replicate (seed) draws its own data from data_seed and its seed: seed set, "
        "pool and test subset (the strategies of one replicate share it), so intervals include the data's own "
        "variance; false = one draw for every replicate")
    # -- where the rows are ------------------------------------------------------------------------
    path: str | None = Field(
        None, description="gsm8k/math: a local folder with the split files (null = the hub); file: a folder of "
                          "split files, or one file that every role is cut from")
    name: str | None = Field(None, description="hf: dataset name (required); math: hub repository")
    config: str | None = Field(None, description="hf: dataset config")
    revision: str | None = Field(None, description="hf: dataset revision (a commit, for reproducible runs)")
    columns: ColumnsConfig = Field(ColumnsConfig(), description="file/hf: source column of each field")
    levels: list[int] | Literal["all"] = Field([1, 2, 3], description="math: levels kept (paper: 1-3)")
    splits: SplitsConfig = SplitsConfig()
    pool: PoolSourceConfig | None = Field(None, description="a pool from a second file or HF dataset")
    link: Literal["none", "tfidf", "lsa"] = Field(
        "none", description="link pool items naming no seed to their nearest seed question (scikit-learn); "
                            "the cosine is kept as link_similarity")
    # -- slices ------------------------------------------------------------------------------------
    seed_limit: int | None = Field(None, gt=0, description="at most this many seeds (a seeded random slice)")
    pool_limit: int | None = Field(None, gt=0, description="at most this many pool items")
    dev_limit: int | None = Field(None, gt=0, description="at most this many dev problems")
    test_limit: int | None = Field(None, gt=0, description="at most this many test problems")
    # -- checks ------------------------------------------------------------------------------------
    skip_invalid: bool = Field(False, description="skip (and count) invalid rows instead of stopping the run")
    contamination: Literal["refuse", "drop", "allow"] = Field(
        "refuse", description="seed/pool/dev questions equal or near-equal to a test question: refuse the run, "
                              "drop them from seed/pool/dev (recorded), or allow them")
    near_duplicate_threshold: float = Field(0.9, gt=0.0, le=1.0, description="TF-IDF cosine for near duplicates")

    @model_validator(mode="after")
    def _fields_fit_source(self) -> DataConfig:
        used = SOURCE_FIELDS[self.source]
        stray = [f for f in type(self).model_fields if f in self.model_fields_set and f not in used]
        if stray:
            keys = ", ".join(f"data.{f}" for f in stray)
            verb = "does" if len(stray) == 1 else "do"
            raise ValueError(f"{keys} {verb} not apply to data.source {self.source!r}; it reads "
                             f"{', '.join(f for f in used if f != 'source')} (a preset for another source may have "
                             f"set them: start from preset gsm8k, math or default instead)")
        if self.source == "embedded":
            if self.min_steps > self.max_steps:
                raise ValueError(f"data.min_steps ({self.min_steps}) > data.max_steps ({self.max_steps})")
            return self
        if self.source == "file" and not self.path:
            raise ValueError("data.path is required for data.source 'file' (a folder of split files, or one file)")
        if self.source == "hf" and not self.name:
            raise ValueError("data.name (the Hugging Face dataset, e.g. openai/gsm8k) is required for data.source 'hf'")
        if isinstance(self.levels, list):
            bad = [lv for lv in self.levels if not 1 <= lv <= 5]
            if bad or not self.levels:
                raise ValueError(f"data.levels must list MATH levels 1..5 (or be 'all'), got {self.levels}")
        if self.dev_limit is not None and self.splits.dev is None:
            raise ValueError("data.dev_limit is set but data.splits.dev names no split to take the dev rows from")
        if self.pool is not None and self.splits.pool is not None:
            raise ValueError("data.pool and data.splits.pool both give a pool; keep one")
        if self.pool is None and self.splits.pool is None:
            raise ValueError("data gives no pool: set data.splits.pool (cut it from a split, e.g. train) or "
                             "data.pool (a second file or HF dataset)")
        for mapped in ("seed_id", "seed_question"):
            if getattr(self.columns, mapped) is not None:
                raise ValueError(f"data.columns.{mapped} links pool rows to seeds: give it in data.pool.columns, "
                                 "with the pool as its own source")
        return self

    @model_serializer(mode="wrap")
    def _dump_own_fields(self, handler: Any) -> dict[str, Any]:
        used = SOURCE_FIELDS[self.source]
        return {k: v for k, v in handler(self).items() if k in used}

    @property
    def pool_size(self) -> int:
        """Pool items of the embedded task (the other sources know theirs only once loaded)."""
        return self.n_seeds * self.pool_per_seed

    def split_of(self, role: str) -> str | None:
        """The source split feeding `role` (seed | pool | dev | test); None for a pool from data.pool."""
        return getattr(self.splits, role)

    def limit_of(self, role: str) -> int | None:
        return getattr(self, f"{role}_limit")
