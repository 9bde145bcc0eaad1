"""Out-of-memory backoff for scoring and sampling: halve the batch and retry, never fail the round.

A batch size that fits one checkpoint may not fit the next (longer selected examples, a larger pool, another
process on the card). Work that is split into independent batches recovers by running the failed batch as two
halves, recursively, down to a single item; only an item that cannot run alone fails. Each halving is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_oom(err: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error, by type or by the allocator's message."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def free_cached_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def halve_on_oom(run: Callable[[np.ndarray], None], items: np.ndarray, *, what: str) -> None:
    """`run(items)`; on out-of-memory run each half of `items` the same way (results are written by `run`)."""
    try:
        run(items)
        return
    except Exception as err:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
        if not is_oom(err) or len(items) <= 1:
            raise
    free_cached_memory()
    half = len(items) // 2
    log.warning("%s: out of memory on a batch of %d; retrying as %d + %d", what, len(items), half, len(items) - half)
    halve_on_oom(run, items[:half], what=what)
    halve_on_oom(run, items[half:], what=what)


def shrink_on_oom(run: Callable[[int], T], size: int, *, what: str) -> T:
    """`run(size)`, retried with size // 2 after each out-of-memory error, down to 1."""
    while True:
        try:
            return run(size)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_oom(err) or size <= 1:
                raise
        free_cached_memory()
        log.warning("%s: out of memory at batch %d; retrying at %d", what, size, size // 2)
        size //= 2
