"""Load the examples a run uses.

`load_examples` turns `cfg.data` into one Examples frame (`loop.schema`): it reads each split of the source
once (`loop.data.sources`), validates it (`loop.data.validation`: bad rows stop the run naming file, line and field, or
are skipped and counted with `skip_invalid`), cuts the roles seed/pool/dev/test out of the splits (seeded
slices), links pool items to seeds, and applies the contamination policy (refuse | drop | allow) to
seed/pool/dev questions that repeat a test question (`loop.data.contamination`). `loop.data.checks` re-checks the
frame against what the run needs; both run when a run is prepared (`loop.run.prepare`), before round 0.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from loop.config import ROLES, DataConfig, RunConfig
from loop.data.contamination import ContaminatedDataError, check_contamination
from loop.data.linking import link_by_question, link_to_nearest_seed
from loop.data.sources import ColumnMapping, load_file, load_gsm8k, load_hf, load_math
from loop.data.sources.hub import MATH_HUB
from loop.data.validation import ValidationReport, validate_examples
from loop.schema import EXAMPLE_SCHEMA

log = logging.getLogger(__name__)

# Roles sharing one split are cut in this order: the test and dev slices never depend on the seed/pool sizes.
CUT_ORDER = ("test", "dev", "seed", "pool")
DATA_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet")
@dataclass
class DataReport:
    """What `load_data` did: validation of each source read, rows per role, rows dropped and why,
    contamination pairs found (columns train_id, test_id, kind, similarity), pool items linked to their
    nearest seed."""

    validation: list[ValidationReport] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    contamination: pl.DataFrame | None = None
    linked_nearest: int = 0

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def __str__(self) -> str:
        lines = [str(v) for v in self.validation]
        lines.append("examples: " + ", ".join(f"{r} {self.counts.get(r, 0)}" for r in ROLES))
        lines += [f"dropped {n}: {reason}" for reason, n in self.dropped.items()]
        if self.linked_nearest:
            lines.append(f"pool items linked to their nearest seed: {self.linked_nearest}")
        return "\n".join(lines)


# --- reading one split -------------------------------------------------------------------------------


def _mapping(columns) -> ColumnMapping:
    return ColumnMapping.of(columns.model_dump())


def _split_files(d: DataConfig, split: str) -> tuple[Path, ...]:
    """Files of `split` for source `file`: the one file `path`, or in folder `path` the file named
    `split` (when it has a data suffix) or `{split}.jsonl|.ndjson|.csv|.tsv|.parquet`, or the Parquet
    shards `{split}-*.parquet` / `{split}/*.parquet` of a hub snapshot."""
    root = Path(d.path)
    if root.is_file():
        return (root,)
    if not root.is_dir():
        raise FileNotFoundError(f"data.path {d.path!r}: no such file or folder")
    if split.lower().endswith(DATA_SUFFIXES):
        if not (root / split).is_file():
            raise FileNotFoundError(f"data.splits names {split!r}, which is not a file in {root}")
        return (root / split,)
    for suffix in DATA_SUFFIXES:
        if (root / f"{split}{suffix}").is_file():
            return (root / f"{split}{suffix}",)
    shards = sorted({*root.glob(f"**/{split}-*.parquet"), *root.glob(f"**/{split}/*.parquet")})
    if not shards:
        raise FileNotFoundError(f"{root}: no file for split {split!r} (looked for {split}.jsonl, .ndjson, .csv, "
                                f".tsv, .parquet and Parquet shards {split}-*.parquet)")
    return tuple(shards)


def _split_key(cfg: RunConfig, split: str) -> tuple[str, ...]:
    """What identifies a split's rows: roles with the same key share (and are cut from) the same rows."""
    if cfg.data.source == "file":
        return tuple(str(p) for p in _split_files(cfg.data, split))
    return (split,)


def _read_split(cfg: RunConfig, split: str) -> pl.DataFrame:
    """One split of the main source as an Examples frame with provenance columns (split column: seed)."""
    d = cfg.data
    if d.source == "gsm8k":
        return load_gsm8k(d.path, {split: "seed"})
    if d.source == "math":
        levels = None if d.levels == "all" else d.levels
        return load_math(d.path, levels=levels, split_map={split: "seed"}, hub_name=d.name or MATH_HUB)
    if d.source == "hf":
        extra = {"revision": d.revision} if d.revision else {}
        return load_hf(d.name, d.config, split, _mapping(d.columns), as_split="seed", task=cfg.task, **extra)
    frames = [load_file(f, _mapping(d.columns), split="seed", task=cfg.task) for f in _split_files(d, split)]
    return pl.concat(frames, how="diagonal_relaxed")


def _label(cfg: RunConfig, split: str, key: tuple[str, ...]) -> str:
    """How reports and errors name a split: its file, or dataset/split."""
    d = cfg.data
    if d.source == "file":
        return key[0] if len(key) == 1 else f"{d.path}/{split}"
    return f"{d.name or d.source}/{split}"


def _read_pool(cfg: RunConfig) -> tuple[str, pl.DataFrame]:
    p = cfg.data.pool
    if p.source == "file":
        return p.path, load_file(p.path, _mapping(p.columns), split="pool", task=cfg.task)
    extra = {"revision": p.revision} if p.revision else {}
    label = "/".join(x for x in (p.name, p.config, p.split) if x)
    return label, load_hf(p.name, p.config, p.split, _mapping(p.columns), as_split="pool", task=cfg.task, **extra)


# --- cutting roles out of splits ---------------------------------------------------------------------


def _slice(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Row positions of a role that has its split to itself: all rows, or a seeded random `limit` of them."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(rng.permutation(n)[:limit])


def _cut(d: DataConfig, roles: list[str], n: int, label: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Row positions of each role sharing one split of `n` rows: one seeded shuffle, cut in CUT_ORDER."""
    if len(roles) == 1:
        return {roles[0]: _slice(n, d.limit_of(roles[0]), rng)}
    order = [r for r in CUT_ORDER if r in roles]
    unlimited = [r for r in order[:-1] if d.limit_of(r) is None]
    if unlimited:
        raise ValueError(f"data: {', '.join(order)} share the split {label!r}; set "
                         f"{', '.join(f'data.{r}_limit' for r in unlimited)} so its rows can be divided "
                         f"(roles are cut in the order {', '.join(order)}, the last one taking the rest)")
    perm, start, out = rng.permutation(n), 0, {}
    for role in order:
        take = d.limit_of(role) or n - start
        out[role] = np.sort(perm[start:start + take])
        if not len(out[role]):
            wanted = " + ".join(f"data.{r}_limit {d.limit_of(r)}" for r in order[: order.index(role)])
            raise ValueError(f"data: the split {label!r} has {n} valid rows; {wanted} leave none for the {role} role")
        start += take
    return out


def _rows(frame: pl.DataFrame, positions: np.ndarray) -> pl.DataFrame:
    """The rows at sorted `positions`, in file order."""
    return frame.with_row_index("_pos").filter(pl.col("_pos").is_in(positions.tolist())).drop("_pos")


def _seeded(seed: int, key: tuple[str, ...]) -> np.random.Generator:
    # One stream per split, so the slices of one split never depend on another split's size.
    return np.random.default_rng([seed, zlib.crc32("\0".join(key).encode())])


# --- the whole load ----------------------------------------------------------------------------------


def _tagged(frame: pl.DataFrame, role: str, label: str) -> pl.DataFrame:
    return frame.with_columns(split=pl.lit(role), _from=pl.lit(label))


def _link_pool(pool: pl.DataFrame, seeds: pl.DataFrame, all_seeds: pl.DataFrame,
               report: DataReport) -> pl.DataFrame:
    """Links named by the pool (seed_id, or seed_question matched against every row of the seed split);
    rows naming a seed outside the seed set are dropped: they belong to problems this run does not train on."""
    pool = link_by_question(pool, all_seeds)
    seed_ids = seeds["id"].to_list()
    outside = pool["seed_id"].is_not_null() & ~pool["seed_id"].is_in(seed_ids)
    report.drop("pool items whose seed is not in the seed set (a sliced seed split, or another split)",
                int(outside.sum()))
    pool = pool.filter(~outside)
    if "seed_question" in pool.columns:
        unmatched = pool["seed_id"].is_null() & pool["seed_question"].is_not_null()
        report.drop("pool items whose seed_question is no seed's question", int(unmatched.sum()))
        pool = pool.filter(~unmatched)
    return pool


def _apply_contamination(d: DataConfig, parts: dict[str, pl.DataFrame], report: DataReport) -> None:
    """refuse: raise naming every pair; drop: remove the seed/pool/dev side (and pool items of a dropped seed)."""
    train_like = pl.concat([parts[r].select("id", "question") for r in ("seed", "pool", "dev") if r in parts])
    pairs = check_contamination(train_like, parts["test"], d.near_duplicate_threshold)
    report.contamination = pairs
    if not pairs.height:
        return
    if d.contamination == "refuse":
        raise ContaminatedDataError(pairs, d.near_duplicate_threshold)
    if d.contamination == "allow":
        log.warning("%d seed/pool/dev questions repeat a test question; kept (data.contamination: allow)",
                    pairs["train_id"].n_unique())
        return
    bad = set(pairs["train_id"].to_list())
    dropped_seeds = set(parts["seed"].filter(pl.col("id").is_in(bad))["id"].to_list())
    for role in ("seed", "pool", "dev"):
        if role not in parts:
            continue
        frame = parts[role]
        gone = pl.col("id").is_in(bad)
        if role == "pool":
            orphan = pl.col("seed_id").is_in(dropped_seeds).fill_null(False)
            report.drop("pool items of a seed dropped for contamination", frame.filter(~gone & orphan).height)
            gone = gone | orphan
        report.drop(f"{role} items repeating a test question (data.contamination: drop)",
                    frame.filter(pl.col("id").is_in(bad)).height)
        parts[role] = frame.filter(~gone)


def load_data(cfg: RunConfig) -> tuple[pl.DataFrame, DataReport]:
    """The Examples frame of `cfg.data` and a report of what was validated, cut, linked and dropped.

    Writes columns id, seed_id, question, solution, answer, split (seed | pool | dev | test) and, as the
    source has them, source, level, subject, seed_question, link_similarity (cosine of a nearest-seed link,
    null for links the pool named). Raises DataValidationError (file, line, field), ContaminatedDataError,
    SourceUnavailableError (hub unreachable, no path), FileNotFoundError or ValueError (impossible cuts).
    """
    d = cfg.data
    report = DataReport()
    if d.source == "embedded":
        from loop.embedded.task import make_task

        frame = make_task(n_seeds=d.n_seeds, pool_per_seed=d.pool_per_seed, n_dev=d.n_dev, n_test=d.n_test,
                          min_steps=d.min_steps, max_steps=d.max_steps, seed=d.data_seed)
        report.counts = dict(frame.group_by("split").len().iter_rows())
        return frame, report

    groups: dict[tuple[str, ...], list[str]] = {}
    splits: dict[tuple[str, ...], str] = {}
    for role in CUT_ORDER:
        split = d.split_of(role)
        if split is not None:
            key = _split_key(cfg, split)
            groups.setdefault(key, []).append(role)
            splits.setdefault(key, split)

    parts: dict[str, pl.DataFrame] = {}
    all_seeds = None
    for key, roles in groups.items():
        raw = _read_split(cfg, splits[key])
        label = _label(cfg, splits[key], key)
        frame, checked = validate_examples(raw, label, d.skip_invalid, task=cfg.task)
        report.validation.append(checked)
        for role, rows in _cut(d, roles, frame.height, splits[key], _seeded(d.data_seed, key)).items():
            parts[role] = _tagged(_rows(frame, rows), role, label)
        if "seed" in roles:
            all_seeds = frame

    if d.pool is not None:
        label, raw = _read_pool(cfg)
        frame, checked = validate_examples(raw, label, d.skip_invalid, task=cfg.task,
                                           seed_ids=all_seeds["id"].to_list())
        report.validation.append(checked)
        pool = _link_pool(_tagged(frame, "pool", label), parts["seed"], all_seeds, report)
        parts["pool"] = _rows(pool, _slice(pool.height, d.pool_limit, _seeded(d.data_seed, ("pool",))))

    _apply_contamination(d, parts, report)
    if d.link != "none":
        before = parts["pool"]["seed_id"].null_count()
        parts["pool"] = link_to_nearest_seed(parts["pool"], parts["seed"], d.link)
        report.linked_nearest = before - parts["pool"]["seed_id"].null_count()

    frame = pl.concat([parts[r] for r in ROLES if r in parts], how="diagonal_relaxed")
    _refuse_shared_ids(frame)
    frame = frame.drop("_from").with_columns([pl.col(c).cast(t) for c, t in EXAMPLE_SCHEMA.items()])
    report.counts = {r: parts[r].height for r in ROLES if r in parts}
    return frame, report


def _refuse_shared_ids(frame: pl.DataFrame) -> None:
    """Ids must be unique across roles: the run store, the ledgers and the selections key on them."""
    shared = frame.group_by("id", maintain_order=True).agg(pl.col("_from").unique(maintain_order=True),
                                                           pl.col("split").unique(maintain_order=True), n=pl.len())
    shared = shared.filter(pl.col("n") > 1)
    if shared.height:
        r = shared.row(0, named=True)
        raise ValueError(f"id {r['id']!r} is used by {r['n']} rows ({' and '.join(r['_from'])}, roles "
                         f"{', '.join(r['split'])}) and {shared.height - 1} more ids likewise: ids must be unique "
                         "across splits; map no id column (rows are then numbered per file) or make them unique")


def load_examples(cfg: RunConfig) -> pl.DataFrame:
    """`load_data` without the report, which goes to the log (a warning when rows were skipped or dropped)."""
    frame, report = load_data(cfg)
    if cfg.data.source != "embedded":
        skipped = any(v.skipped for v in report.validation)
        log.log(logging.WARNING if skipped or report.dropped else logging.INFO, "data: %s", report)
    return frame
