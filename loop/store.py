"""The run store: one folder per run; every finished step is written atomically and never redone.

Layout under `root`:
    config.yaml, manifest.json             what was run, with library versions and data/model hashes
    data/seed-S/examples.parquet           the examples replicate S's steps read (its own draw of the data),
                                           with report.json (what loading did) beside them
    signals/seed-S/base_perplexity.parquet round-independent signals of replicate S, computed once
    steps/seed-S/STRATEGY/round-R/         selected.parquet, ledger.parquet, signals.parquet,
                                           eval.parquet, timings.parquet, step.json (and model/ if kept;
                                           round 0 of a run with an auto threshold: tau_curve.parquet)
    analysis/seed-S/run-K/                 the analysis sweep's run K: ledger.parquet, accuracy.parquet (dev and
                                           test accuracy per checkpoint), robustness.parquet, timings.parquet, run.json
    report/                                index.html, curves.png, summary.json
A step folder appears only complete (written under a temporary name, then renamed), so a run killed
mid-step resumes at that step and nothing a finished step wrote is lost or rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from loop.config import RunConfig
from loop.schema import EVAL_SCHEMA, LEDGER_SCHEMA, TIMING_SCHEMA


class ConfigMismatchError(ValueError):
    """The output folder holds a run of another config."""


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through `write(tmp_path)` then rename over `path`: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- run level -------------------------------------------------------------------------------
    def open(self, cfg: RunConfig, manifest: dict[str, Any]) -> None:
        """Create the run folder, or check that an existing one holds this same config (then resume)."""
        wanted = cfg.model_dump(mode="json", exclude={"preset"})
        config_path = self.root / "config.yaml"
        if config_path.exists():
            stored = yaml.safe_load(config_path.read_text())
            differences = _diff(stored, wanted)
            if differences:
                raise ConfigMismatchError(
                    f"{self.root} holds a run of another config ({'; '.join(differences[:5])}); "
                    "resume with the same config or choose another out_dir"
                )
        else:
            write_atomic(config_path, lambda p: p.write_text(yaml.safe_dump(wanted, sort_keys=False)))
        self.write_json("manifest.json", manifest)
        for pattern in ("steps/*/*/.round-*.tmp-*", "analysis/*/.run-*.tmp-*"):
            for leftover in self.root.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)  # a step or run killed before its rename

    def write_json(self, relative: str, payload: Any) -> None:
        write_atomic(self.root / relative, lambda p: p.write_text(json.dumps(payload, indent=2, default=str)))

    def write_parquet(self, relative: str, frame: pl.DataFrame) -> None:
        write_atomic(self.root / relative, frame.write_parquet)

    def read_parquet(self, relative: str) -> pl.DataFrame | None:
        path = self.root / relative
        return pl.read_parquet(path) if path.exists() else None

    # -- steps -----------------------------------------------------------------------------------
    def step_dir(self, seed: int, strategy: str, round_: int) -> Path:
        return self.root / "steps" / f"seed-{seed}" / strategy / f"round-{round_}"

    def is_done(self, seed: int, strategy: str, round_: int) -> bool:
        return (self.step_dir(seed, strategy, round_) / "step.json").exists()

    def commit_step(self, seed: int, strategy: str, round_: int, frames: dict[str, pl.DataFrame],
                    info: dict[str, Any], model_writer: Callable[[Path], None] | None = None) -> Path:
        return self.commit_dir(self.step_dir(seed, strategy, round_), frames, info, "step.json", model_writer)

    def commit_dir(self, final: Path, frames: dict[str, pl.DataFrame], info: dict[str, Any], record: str,
                   model_writer: Callable[[Path], None] | None = None) -> Path:
        """Write `frames` as Parquet and `info` as `record` into a temporary folder, then rename it to `final`:
        the folder exists only complete, its `record` last of all."""
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, frame in frames.items():
            frame.write_parquet(tmp / f"{name}.parquet")
        if model_writer is not None:
            model_writer(tmp / "model")
        (tmp / record).write_text(json.dumps(info, indent=2, default=str))
        os.replace(tmp, final)  # the folder exists only once complete
        return final

    def step_frame(self, seed: int, strategy: str, round_: int, name: str) -> pl.DataFrame:
        path = self.step_dir(seed, strategy, round_) / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: step (seed {seed}, {strategy}, round {round_}) is not done")
        return pl.read_parquet(path)

    def _collect(self, name: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        files = sorted(self.root.glob(f"steps/seed-*/*/round-*/{name}.parquet"))
        frames = [pl.read_parquet(f) for f in files]
        frames = [f for f in frames if f.height]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema=schema)

    def evaluations(self) -> pl.DataFrame:
        return self._collect("eval", EVAL_SCHEMA)

    def timings(self) -> pl.DataFrame:
        return self._collect("timings", TIMING_SCHEMA)

    def ledgers(self) -> pl.DataFrame:
        return self._collect("ledger", LEDGER_SCHEMA)
