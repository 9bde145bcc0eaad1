"""Which device a process computes on, and one GPU per worker process.

Each process that trains holds a lease on one GPU: an exclusive `flock` on a lock file per card, machine-wide,
taken before CUDA starts in the process and released by the OS when the process ends (a killed run leaves no
stale lease). The process then sees only its card (`CUDA_VISIBLE_DEVICES`), which also keeps the HF Trainer from
spreading one run over every visible GPU with DataParallel. Two curation-loop processes never share a card unless
the config says so (`share_gpus`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

LOCK_DIR = Path(os.environ.get("CURATION_LOOP_GPU_LOCKS", Path(tempfile.gettempdir()) / "curation-loop-gpus"))
_lease: tuple[str, int] | None = None  # (card, fd) held by this process


class NoFreeGPUError(RuntimeError):
    """Every visible GPU is leased by another curation-loop process."""


def visible_gpus() -> list[str]:
    """The cards this process may use, as CUDA_VISIBLE_DEVICES entries, without initialising CUDA (NVML count)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [entry.strip() for entry in listed.split(",") if entry.strip() and entry.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())]


def claim_gpu(cards: list[str], lock_dir: Path = LOCK_DIR, *, share: bool = False) -> str:
    """Lease the first free card of `cards` for this process's lifetime and return it.

    With `share`, the first card is returned without a lease. Raises NoFreeGPUError naming the lock files when
    every card is held.
    """
    global _lease
    if _lease is not None and _lease[0] in cards:
        return _lease[0]
    if not cards:
        raise NoFreeGPUError("no GPU is visible to this process (CUDA_VISIBLE_DEVICES is empty)")
    if share:
        return cards[0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    for card in cards:
        fd = os.open(lock_dir / f"gpu-{_safe(card)}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _lease = (card, fd)
        return card
    raise NoFreeGPUError(
        f"all {len(cards)} GPUs ({', '.join(cards)}) are held by other curation-loop processes (lock files in "
        f"{lock_dir}); wait for them, lower `workers`, or set share_gpus: true to run beside them")


def _safe(card: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in card)


def pick_device(device: str, *, share_gpus: bool = False) -> torch.device:
    """The device of this process. On CUDA, lease a card first and make it the only one visible.

    Must run before anything starts CUDA in the process; if CUDA already started with several cards visible, the
    lease cannot narrow them and this raises instead of letting the Trainer spread over every card.
    """
    if device == "cpu":
        return torch.device("cpu")
    cards = visible_gpus()
    if not cards:
        if device == "cuda":
            raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
        return torch.device("cpu")
    card = claim_gpu(cards, share=share_gpus)
    if torch.cuda.is_initialized():
        if torch.cuda.device_count() > 1:
            raise RuntimeError(
                "CUDA started in this process before a GPU was leased, with several cards visible: set "
                "CUDA_VISIBLE_DEVICES to one card, or build the Engine before any CUDA call")
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = card
    if not torch.cuda.is_available():
        raise RuntimeError(f"GPU {card} was leased but CUDA cannot start on it")
    log.info("process %d computes on GPU %s", os.getpid(), card)
    return torch.device("cuda", 0)


def workers_per_card(workers: int, share_gpus: bool) -> int:
    """How many of a run's worker processes train on one card: all of them where they share (each takes the first
    visible card, `claim_gpu`), else one (a card each)."""
    return max(1, workers) if share_gpus else 1


def check_workers(workers: int, device: str, *, share_gpus: bool) -> None:
    """Refuse a config whose workers would have to share a GPU (call in the parent, before workers start)."""
    if device == "cpu" or workers <= 1 or share_gpus:
        return
    cards = visible_gpus()
    if cards and workers > len(cards):
        raise ValueError(
            f"workers={workers} but {len(cards)} GPU(s) are visible: each worker process trains on a GPU of its own. "
            "Set workers <= the number of GPUs, or share_gpus: true to let workers share cards")
