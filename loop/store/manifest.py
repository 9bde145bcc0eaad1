"""What a run store records about its run, and what a resume must share with the first start: the config (less how to
run it) and the manifest's library versions, base weights, precision, sampling engine and data.

One change to the config is a resume, not another run: more replicates (`seeds` grown, every stored seed kept).
Replicates are independent draws (each its own seed set, pool, test subset and training seed; `auto` never pools
evidence across them), so a replicate added later computes what it would have in the first start, and the finished
replicates are read back as they are. A user whose report says a comparison needs more replicates adds them to the
same run store."""

from __future__ import annotations

from typing import Any

class ConfigMismatchError(ValueError):
    """The output folder holds a run of another config."""


class ResumeMismatchError(ValueError):
    """The run store was started under other library versions, base weights or data than this resume has."""


# What a resume must share with the first start: anything else (the machine, the time) may change.
RESUME_KEYS = ("versions", "model", "model_weights_sha256", "precision", "sampling_engine", "data_per_replicate",
               "examples")
# Config fields that say how to run, not what was run: a run store may be moved (out_dir) and resumed there, and
# resumed with other trackers watching it (tracking).
NOT_STORED = {"preset", "allow_resume_changes", "out_dir", "scale", "tracking"}


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += diff(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def config_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """How the config a store holds differs from the one a resume brings (empty: the same run)."""
    return diff(stored, wanted)


def added_replicates(stored: dict[str, Any], wanted: dict[str, Any]) -> list[int] | None:
    """The seeds `wanted` adds to the stored config where that is its only change (every stored seed kept, any
    order); None where anything else differs or a stored seed is dropped."""
    old, new = stored.get("seeds"), wanted.get("seeds")
    if not isinstance(old, list) or not isinstance(new, list) or not set(old) <= set(new):
        return None
    if diff({**stored, "seeds": None}, {**wanted, "seeds": None}):
        return None
    return sorted(set(new) - set(old))


def resume_changes(first: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """How this start's manifest differs from the first start's in what a resume must share. A key the first manifest
    lacks was not recorded yet when the run started: nothing to compare it with. Per-replicate entries (`examples`)
    are compared for the replicates the first start had; a replicate added since has nothing to compare with."""
    keys = [k for k in RESUME_KEYS if k in first]
    now = {k: manifest.get(k) for k in keys}
    if isinstance(first.get("examples"), dict) and isinstance(now.get("examples"), dict):
        now["examples"] = {seed: v for seed, v in now["examples"].items() if seed in first["examples"]}
    return diff({k: first[k] for k in keys}, now)
