"""The run store: one folder per run (its paths: `loop.store.layout`); every finished step is written atomically and
never redone. A step folder appears only complete (written under a temporary name, then renamed), so a run killed
mid-step resumes at that step and nothing a finished step wrote is lost or rewritten.

`root` may be an fsspec URL (s3://bucket/runs/x): the store then works in a local copy and keeps it in step with
that location (`loop.store.sync`), so that processes on several machines share one run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from loop import faults
from loop.config import RunConfig
from loop.schema import EVAL_SCHEMA, LEDGER_SCHEMA, TIMING_SCHEMA
from loop.store import layout
from loop.store.files import DamagedFileError, file_sha256, read_frame, write_atomic, writer_alive
from loop.store.manifest import (NOT_STORED, ConfigMismatchError, ResumeMismatchError, Additions, additions,
                                 config_differences, merge_added, resume_changes, with_added_fields)
from loop.store.sync import Remote, is_remote

log = logging.getLogger(__name__)


class RunStore:
    def __init__(self, root: str | Path, cache_dir: str | Path | None = None):
        """`root`: a folder, or an fsspec URL worked on in the local copy `cache_dir` (default: under
        ~/.cache/curation-loop/stores/)."""
        self.remote = Remote(str(root), cache_dir) if is_remote(root) else None
        self.root = self.remote.local if self.remote else Path(root)
        self.location = self.remote.location if self.remote else str(root)

    def _push(self, relative: str) -> None:
        if self.remote is not None:
            self.remote.push_file(relative, whole=True)

    def _pull(self, relative: str) -> None:
        """Bring a file another process wrote at the location into the local copy, where it is not there yet."""
        if self.remote is not None and not (self.root / relative).exists():
            self.remote.pull_file(relative)

    def pull_all(self) -> None:
        """Bring every run-level file and committed folder from the location into the local copy (a report reads
        them all)."""
        if self.remote is None:
            return
        for relative in (layout.CONFIG, layout.MANIFEST):
            self.remote.pull_file(relative)
        for pattern in (layout.DATA_FILES, layout.SIGNAL_FILES):
            for found in self.remote.fs.glob(self.remote._remote(pattern)):
                if ".tmp-" not in found:
                    self._pull(found[len(self.remote.path):].lstrip("/"))
        for folders, record in layout.COMMITTED:
            for folder in self.remote.committed(f"{folders}/{record}"):
                if not (self.root / folder / record).exists():
                    self.remote.pull_folder(folder, record)

    # -- run level -------------------------------------------------------------------------------
    def open(self, cfg: RunConfig, manifest: dict[str, Any],
             check_additions: Callable[[Additions], None] | None = None) -> None:
        """Create the run folder, or check that an existing one holds this same config (then resume).

        A config that only adds replicates or strategies to the stored one resumes it (`loop.store.manifest`), after
        `check_additions(additions)` raises nothing. A field the stored config lacks, added to the loop since the
        run started, is no difference where this config leaves it at its default (`with_added_fields`). The
        manifest of the first start is kept: a resume whose library versions, base weights or data differ from it
        stops with the differences, unless cfg.allow_resume_changes; every resume is appended to
        `manifest.json["resumes"]` with what changed."""
        wanted = cfg.model_dump(mode="json", exclude=NOT_STORED)
        self.root.mkdir(parents=True, exist_ok=True)
        for relative in (layout.CONFIG, layout.MANIFEST):  # the location's are the truth: another process may have
            if self.remote is not None:                     # started the run, or resumed it since
                self.remote.pull_file(relative)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(f"run store {self.root} (of {self.location}) is not writable: choose another "
                                  "out_dir or fix its permissions")
        config_path = self.root / layout.CONFIG
        added = Additions()
        if config_path.exists():
            defaults = type(cfg)().model_dump(mode="json", exclude=NOT_STORED)
            stored = with_added_fields(yaml.safe_load(config_path.read_text()), wanted, defaults)
            differences = config_differences(stored, wanted)
            if differences:
                added = additions(stored, wanted) or Additions()
                if not added:
                    raise ConfigMismatchError(
                        f"{self.location} holds a run of another config ({'; '.join(differences[:5])}); resume "
                        "with the same config (more `seeds` add replicates, more selection.strategies add "
                        "competitors) or choose another out_dir")
                if check_additions is not None:
                    check_additions(added)
                log.info("%s: adding replicates %s and strategies %s to the %d replicates and %d strategies finished "
                         "or started", self.location, added.seeds, added.strategies, len(stored["seeds"]),
                         len(stored["selection"]["strategies"]))
        if added or not config_path.exists():
            write_atomic(config_path, lambda p: p.write_text(yaml.safe_dump(wanted, sort_keys=False)))
            self._push(layout.CONFIG)
        self._record_manifest(manifest, cfg.allow_resume_changes, added)
        self.sweep_leftovers()
        self.push_missing()

    def push_missing(self) -> None:
        """Push what the local copy holds and the location lacks: run-level files and committed folders a killed
        process wrote here but never finished pushing (an unfinished folder's files are written over when pushed)."""
        if self.remote is None:
            return
        for pattern in (layout.CONFIG, layout.DATA_FILES, layout.SIGNAL_FILES):
            for path in sorted(self.root.glob(pattern)):
                relative = str(path.relative_to(self.root))
                if path.is_file() and ".tmp-" not in path.name and not self.remote.exists(relative):
                    self.remote.push_file(relative, whole=True)
        for pattern, record in layout.COMMITTED:
            for folder in sorted(self.root.glob(pattern)):
                if (folder / record).exists():
                    self.is_committed(folder, record)

    def publish(self, relative: str) -> None:
        """Push every file of the local folder `relative` (a report) to the location."""
        if self.remote is not None:
            for path in sorted((self.root / relative).rglob("*")):
                if path.is_file() and ".tmp-" not in path.name:
                    self._push(str(path.relative_to(self.root)))

    def sweep_leftovers(self) -> list[Path]:
        """Remove what a killed process left before its rename (`.NAME.tmp-PID...` files and step folders): never
        read, only in the way. A live process's are kept (it may be renaming them now)."""
        leftovers = [p for p in sorted(self.root.rglob(".*.tmp-*")) if not writer_alive(p.name)]
        for leftover in leftovers:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return leftovers

    def _record_manifest(self, manifest: dict[str, Any], allow_changes: bool, added: Additions) -> None:
        path = self.root / layout.MANIFEST
        if not path.exists():
            self.write_json(layout.MANIFEST, manifest)
            return
        first = json.loads(path.read_text())
        changes = resume_changes(first, manifest)
        if changes and not allow_changes:
            raise ResumeMismatchError(
                f"{self.location} was started under other versions, weights or data than this resume "
                f"({'; '.join(changes[:6])}{' ...' if len(changes) > 6 else ''}): its finished steps would not be "
                "what this environment computes. Resume where it started, choose another out_dir, or set "
                "allow_resume_changes: true to continue (the changes are recorded)")
        resume = {"at": manifest.get("opened"), "changes": changes, "machine": manifest.get("machine")}
        if added.seeds:
            resume["replicates_added"] = added.seeds
        if added.strategies:
            resume["strategies_added"] = added.strategies
        # A replicate or strategy the first start lacked (added now, or by a resume killed before this record) has
        # its data hash or params kept beside the others', for later resumes to check.
        merge_added(first, manifest)
        first.setdefault("resumes", []).append(resume)
        self.write_json(layout.MANIFEST, first)

    def write_json(self, relative: str, payload: Any) -> None:
        write_atomic(self.root / relative, lambda p: p.write_text(json.dumps(payload, indent=2, default=str)))
        self._push(relative)

    def write_parquet(self, relative: str, frame: pl.DataFrame) -> None:
        write_atomic(self.root / relative, frame.write_parquet)
        self._push(relative)

    def read_parquet(self, relative: str) -> pl.DataFrame | None:
        self._pull(relative)
        path = self.root / relative
        return read_frame(path) if path.exists() else None

    def tracking_dir(self) -> Path:
        """Where offline experiment trackers write when tracking.dir is not set: local, never pushed to a remote
        location (a tracker's files are for watching a run, not part of its results)."""
        return self.root / layout.TRACKING

    # -- steps -----------------------------------------------------------------------------------
    def step_dir(self, seed: int, strategy: str, round_: int) -> Path:
        return self.root / layout.step_dir(seed, strategy, round_)

    def is_done(self, seed: int, strategy: str, round_: int) -> bool:
        return self.is_committed(self.step_dir(seed, strategy, round_), layout.STEP_RECORD)

    def is_committed(self, folder: Path, record: str) -> bool:
        """Whether `folder` (under root) holds its `record`, here or, pulled into the copy, at the location. A folder
        committed here that the location lacks (the process was killed while pushing it) is pushed again."""
        relative = str(folder.relative_to(self.root)) if self.remote is not None else ""
        if (folder / record).exists():
            if self.remote is not None and not self.remote.exists(f"{relative}/{record}"):
                self.remote.push_folder(relative, record)
            return True
        return self.remote is not None and self.remote.pull_folder(relative, record)

    def read_record(self, seed: int, strategy: str, round_: int) -> dict[str, Any]:
        """The step.json of a finished step."""
        if not self.is_done(seed, strategy, round_):
            raise FileNotFoundError(f"step (seed {seed}, {strategy}, round {round_}) of {self.location} is not done")
        return json.loads((self.step_dir(seed, strategy, round_) / layout.STEP_RECORD).read_text())

    def commit_step(self, seed: int, strategy: str, round_: int, frames: dict[str, pl.DataFrame],
                    info: dict[str, Any], model_writer: Callable[[Path], None] | None = None) -> Path:
        return self.commit_dir(self.step_dir(seed, strategy, round_), frames, info, layout.STEP_RECORD, model_writer)

    def commit_dir(self, final: Path, frames: dict[str, pl.DataFrame], info: dict[str, Any], record: str,
                   model_writer: Callable[[Path], None] | None = None) -> Path:
        """Write `frames` as Parquet and `info` as `record` into a temporary folder, then rename it to `final`:
        the folder exists only complete, its `record` last of all, holding each table's SHA-256 (`checksums`), which
        `verify` checks when a resume reads the folder back."""
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        checksums = {}
        for name, frame in frames.items():
            frame.write_parquet(tmp / layout.table_file(name))
            checksums[layout.table_file(name)] = file_sha256(tmp / layout.table_file(name))
        if model_writer is not None:
            model_writer(tmp / layout.MODEL)
        (tmp / record).write_text(json.dumps({**info, "checksums": checksums}, indent=2, default=str))
        faults.reached("step.rename")
        os.replace(tmp, final)  # the folder exists only once complete
        if self.remote is not None:
            self.remote.push_folder(str(final.relative_to(self.root)), record)
        return final

    def verify(self, folder: Path, record: str = layout.STEP_RECORD) -> None:
        """Check every table of a committed folder against the checksums its record holds (folders written before
        checksums were recorded pass); a changed or missing table raises DamagedFileError naming it."""
        checksums = json.loads((folder / record).read_text()).get("checksums") or {}
        for name, expected in checksums.items():
            path = folder / name
            if not path.exists() or file_sha256(path) != expected:
                raise DamagedFileError(f"{path} {'is missing' if not path.exists() else 'changed since it was written'}"
                                       f" (its checksum is in {folder / record}): remove {folder} to recompute it")

    def prune_models(self, seed: int, strategy: str) -> list[Path]:
        """Remove the model/ folders of the chain (seed, strategy) but its latest round's and its best round's (by
        test accuracy); returns what was removed. Only the models go: every table of every step stays."""
        kept = []
        for folder in sorted(self.root.glob(layout.chain_folders(seed, strategy))):
            if (folder / layout.MODEL).is_dir() and (folder / layout.STEP_RECORD).exists():
                info = json.loads((folder / layout.STEP_RECORD).read_text())
                kept.append((layout.round_of(folder), info.get("accuracy", float("-inf")), folder))
        if len(kept) <= 2:
            return []
        latest = max(kept)[2]
        best = max(kept, key=lambda k: (k[1], k[0]))[2]
        removed = []
        for _, _, folder in kept:
            if folder not in (latest, best):
                shutil.rmtree(folder / layout.MODEL)
                if self.remote is not None:
                    self.remote.remove(str((folder / layout.MODEL).relative_to(self.root)))
                removed.append(folder / layout.MODEL)
        return removed

    def disk_usage(self) -> dict[str, int]:
        """Bytes the run store holds: in total, in kept models, in backend files (vLLM checkpoints, adapters)."""
        def size(paths) -> int:
            return sum(p.stat().st_size for p in paths if p.is_file())

        backend = self.root / layout.BACKEND
        return {"total": size(self.root.rglob("*")),
                "models": size(p for d in self.root.glob(f"{layout.STEP_FOLDERS}/{layout.MODEL}")
                               for p in d.rglob("*")),
                "backend": size(backend.rglob("*")) if backend.exists() else 0}

    def step_frame(self, seed: int, strategy: str, round_: int, name: str) -> pl.DataFrame:
        path = self.step_dir(seed, strategy, round_) / layout.table_file(name)
        if not path.exists():
            self.is_done(seed, strategy, round_)  # a step another process committed at the location is pulled
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: step (seed {seed}, {strategy}, round {round_}) is not done")
        return read_frame(path)

    def _collect(self, name: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        self.pull_all()
        files = sorted(self.root.glob(layout.step_tables(name)))
        frames = [read_frame(f) for f in files]
        frames = [f for f in frames if f.height]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema=schema)

    def evaluations(self) -> pl.DataFrame:
        return self._collect(layout.EVAL, EVAL_SCHEMA)

    def timings(self) -> pl.DataFrame:
        return self._collect(layout.TIMINGS, TIMING_SCHEMA)

    def ledgers(self) -> pl.DataFrame:
        return self._collect(layout.LEDGER, LEDGER_SCHEMA)
