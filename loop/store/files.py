"""Files of the run store: atomic writes (a reader never sees half of one), checksums, and reading a table back with
a damaged file named."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

from loop import faults
from loop.store.layout import is_step_or_run


class DamagedFileError(ValueError):
    """A file of the run store cannot be read back (truncated or overwritten outside the loop)."""


def writer_alive(name: str) -> bool:
    """Whether the process whose pid follows `.tmp-` in `name` still runs (on this machine)."""
    pid = name.rpartition(".tmp-")[2].split(".")[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through `write(tmp_path)` then rename over `path`: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        faults.reached("store.rename")
        os.replace(tmp, path)
    except OSError as err:  # disk full, a read-only folder: the old file stays, the half-written one goes
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"could not write {path}: {err.strerror or err}") from err


def read_frame(path: Path) -> pl.DataFrame:
    """A Parquet file of the store; a damaged one is named, with how to recover (its step is recomputed when its
    folder is removed)."""
    try:
        return pl.read_parquet(path)
    except Exception as err:  # polars raises its own errors for truncated or foreign bytes
        step = next((p for p in path.parents if is_step_or_run(p)), None)
        hint = (f"remove {step} to recompute that step" if step is not None
                else "remove it to recompute it, or restore it from a copy")
        raise DamagedFileError(f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}): "
                               f"{hint}") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
