"""The run store, one folder per run: `layout` (every path in it, built once), `files` (atomic writes, checksums),
`manifest` (what a resume must share with the first start), `sync` (an fsspec location kept in step with a local
copy) and `run_store` (the store the loop reads and writes through). `RunStore` and its errors are named here."""

from loop.store.files import DamagedFileError
from loop.store.manifest import NOT_STORED, ConfigMismatchError, ResumeMismatchError
from loop.store.run_store import RunStore

__all__ = ["NOT_STORED", "ConfigMismatchError", "DamagedFileError", "ResumeMismatchError", "RunStore"]
