"""What a run store records about its run, and what a resume must share with the first start: the config (less how to
run it) and the manifest's library versions, base weights, precision, sampling engine and data.

Two changes to the config are a resume, not another run, alone or together:
- more replicates (`seeds` grown, every stored seed kept). Replicates are independent draws (each its own seed set,
  pool, test subset and training seed; `auto` never pools evidence across them), so a replicate added later computes
  what it would have in the first start, and the finished replicates are read back as they are. A user whose report
  says a comparison needs more replicates adds them to the same run store.
- more strategies (`selection.strategies` grown, every stored entry kept as it was). A strategy's chain reads only its
  replicate's draw, the shared round 0 and random's rounds, never another competitor's, so a strategy added later
  selects and trains what it would have in the first start. It may read only what the stored run computed: the
  engine refuses one that needs a signal (or the dev accuracy `auto` reads) the first start did not compute
  (`loop.run.prepare`). A user who writes a strategy compares it against a finished comparison without rerunning it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

class ConfigMismatchError(ValueError):
    """The output folder holds a run of another config."""


class ResumeMismatchError(ValueError):
    """The run store was started under other library versions, base weights or data than this resume has."""


# What a resume must share with the first start: anything else (the machine, the time) may change.
RESUME_KEYS = ("versions", "model", "model_weights_sha256", "precision", "sampling_engine", "data_per_replicate",
               "examples", "strategy_params")
# Per-replicate and per-strategy entries: compared for the replicates and strategies the first start had (one added
# since has nothing to compare with), and merged into the first start's record when added.
GROWING_KEYS = ("examples", "strategy_params")
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


def with_added_fields(stored: Any, wanted: Any, defaults: Any) -> Any:
    """The stored config with the fields it lacks filled in from `wanted`, where `wanted` leaves them at their
    default (`defaults`: the config's own defaults, dumped as the store dumps a config). A field the stored config
    lacks was added to the loop after the run started, and a new field's default is what the loop did before it
    existed, so a store started by an earlier release resumes under a later one. A new field set otherwise stays a
    difference: the resume would run something else."""
    if not (isinstance(stored, dict) and isinstance(wanted, dict)):
        return stored
    defaults = defaults if isinstance(defaults, dict) else {}
    filled = dict(stored)
    for key, value in wanted.items():
        if key not in stored:
            if key in defaults and defaults[key] == value:
                filled[key] = value
        else:
            filled[key] = with_added_fields(stored[key], value, defaults.get(key))
    return filled


@dataclass(frozen=True)
class Additions:
    """What a resume adds to the stored run: replicates (seeds) and competitors (strategy labels)."""

    seeds: list[int] = field(default_factory=list)
    strategies: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.seeds or self.strategies)


def additions(stored: dict[str, Any], wanted: dict[str, Any]) -> Additions | None:
    """What `wanted` adds to the stored config where adding is its only change: seeds (every stored seed kept, any
    order) and strategy entries (every stored entry kept unchanged, any order). None where anything else differs, a
    stored seed or strategy is dropped or changed, or the stored config has no such lists."""
    old_seeds, new_seeds = stored.get("seeds"), wanted.get("seeds")
    if not isinstance(old_seeds, list) or not isinstance(new_seeds, list) or not set(old_seeds) <= set(new_seeds):
        return None
    old_entries, new_entries = _strategies(stored), _strategies(wanted)
    if old_entries is None or new_entries is None or any(e not in new_entries for e in old_entries):
        return None
    if diff(_without_growth(stored), _without_growth(wanted)):
        return None
    return Additions(seeds=sorted(set(new_seeds) - set(old_seeds)),
                     strategies=[_key(e) for e in new_entries if e not in old_entries])


def _strategies(config: dict[str, Any]) -> list[Any] | None:
    entries = (config.get("selection") or {}).get("strategies")
    return entries if isinstance(entries, list) else None


def _key(entry: Any) -> str:
    """A strategy entry's label as steps name it (its name unless labelled), as `StrategyConfig.key`."""
    return entry if isinstance(entry, str) else entry.get("label") or entry.get("name")


def _without_growth(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "seeds": None, "selection": {**(config.get("selection") or {}), "strategies": None}}


def resume_changes(first: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """How this start's manifest differs from the first start's in what a resume must share. A key the first manifest
    lacks was not recorded yet when the run started: nothing to compare it with. Per-replicate entries (`examples`)
    and per-strategy ones (`strategy_params`, each `auto`'s params as the code ran them) are compared for the
    replicates and strategies the first start had; one added since has nothing to compare with."""
    keys = [k for k in RESUME_KEYS if k in first]
    now = {k: manifest.get(k) for k in keys}
    for key in GROWING_KEYS:
        if isinstance(first.get(key), dict) and isinstance(now.get(key), dict):
            now[key] = {name: v for name, v in now[key].items() if name in first[key]}
    return diff({k: first[k] for k in keys}, now)


def merge_added(first: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Keep the entries of replicates and strategies added by this start beside the first start's (for later
    resumes to check); the first start's own entries stay as they were."""
    for key in GROWING_KEYS:
        if isinstance(first.get(key), dict):
            first[key] = {**(manifest.get(key) or {}), **first[key]}
