"""A run store at an fsspec location (s3://, gs://, az://, file://, ...): a local working copy kept in step with it.

Everything in the loop reads and writes local files: the copy, under `scale.cache_dir` (or
~/.cache/curation-loop/stores/HASH of the location). The run store (`loop.store`) pushes what it writes and pulls
what other processes, on this machine or others, committed:
- a committed folder (a step, an analysis run) goes up file by file, its record (step.json, run.json: every
  table's SHA-256) last. An object store has no rename, so there the record is the commit: a folder without
  one is not finished, is recomputed and written over;
- a run-level file (config, manifest, examples, signals) goes up when written;
- a folder or file the copy lacks is looked up at the location and pulled (a folder into a temporary name, then
  renamed: the copy, too, never holds half of one).
The location's filesystem comes from fsspec (s3fs, gcsfs, adlfs... for the clouds, installed by the user).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import fsspec

from loop import faults


def is_remote(location: str | os.PathLike) -> bool:
    """Whether `location` names an fsspec URL rather than a local folder."""
    return "://" in str(location)


def default_cache(location: str) -> Path:
    base = Path(os.environ.get("CURATION_LOOP_CACHE", Path.home() / ".cache" / "curation-loop"))
    return base / "stores" / hashlib.sha256(location.encode()).hexdigest()[:16]


class Remote:
    """The location of a run store and the local copy it is worked on in."""

    def __init__(self, location: str, cache: str | os.PathLike | None = None):
        self.location = location.rstrip("/")
        self.fs, self.path = fsspec.core.url_to_fs(self.location)
        self.path = self.path.rstrip("/")
        self.local = Path(cache) if cache else default_cache(self.location)

    def url(self, relative: str) -> str:
        return f"{self.location}/{relative}" if relative else self.location

    def _remote(self, relative: str) -> str:
        return f"{self.path}/{relative}" if relative else self.path

    def exists(self, relative: str) -> bool:
        return self.fs.exists(self._remote(relative))

    def push_file(self, relative: str, *, whole: bool = False) -> None:
        """Copy a file of the local copy to the location; `whole`: under a temporary name, then moved onto its own,
        so that no reader sees half of it (an object store's upload is whole anyway; a filesystem's copy is not).
        Records and run-level files go up whole; a table may go up in part, since no reader takes a folder without
        its record, which goes up last."""
        target = self._remote(relative)
        self.fs.makedirs(target.rpartition("/")[0], exist_ok=True)
        if not whole:
            self.fs.put_file(str(self.local / relative), target)
            return
        head, _, name = target.rpartition("/")
        tmp = f"{head}/.{name}.tmp-{os.getpid()}"
        self.fs.put_file(str(self.local / relative), tmp)
        self.fs.mv(tmp, target)

    def push_folder(self, relative: str, record: str) -> None:
        """Every file of the local folder `relative`, `record` last (the commit)."""
        folder = self.local / relative
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != record)
        for path in files:
            faults.reached("remote.push")
            self.push_file(str(path.relative_to(self.local)))
        faults.reached("remote.push")
        self.push_file(str((folder / record).relative_to(self.local)), whole=True)

    def pull_file(self, relative: str) -> bool:
        """Copy `relative` from the location if it is there (atomically into the copy); whether it was."""
        if not self.exists(relative):
            return False
        target = self.local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        self.fs.get_file(self._remote(relative), str(tmp))
        os.replace(tmp, target)
        return True

    def pull_folder(self, relative: str, record: str) -> bool:
        """Copy a committed folder (one holding `record`) from the location; whether it was committed there."""
        if not self.exists(f"{relative}/{record}"):
            return False
        final = self.local / relative
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        prefix = self._remote(relative)
        for found in self.fs.find(prefix):
            inside = found[len(prefix):].lstrip("/")
            if ".tmp-" in inside:  # a push that never finished
                continue
            (tmp / inside).parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(found, str(tmp / inside))
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return True

    def committed(self, pattern: str) -> list[str]:
        """Folders (relative) at the location whose record matches `pattern` (e.g. steps/*/*/round-*/step.json)."""
        found = self.fs.glob(self._remote(pattern))
        return sorted(f[len(self.path):].lstrip("/").rpartition("/")[0] for f in found)

    def remove(self, relative: str) -> None:
        if self.exists(relative):
            self.fs.rm(self._remote(relative), recursive=True)
