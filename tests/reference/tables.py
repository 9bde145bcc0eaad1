"""The tables that define what a run computed, read from a finished run store, for the identical-behaviour check.

Per step: the selected ids, the dynamics ledger, the signals and score tables, the evaluation, and step.json without
its wall-clock fields; per replicate: the examples' hash and size and the round-independent signals; the manifest's
resume keys but its machine and time. Wall-clock timings (timings.parquet, step.json's `seconds`, the timings table's
checksum, the auto controller's compute-seconds check and its lookahead's seconds) differ from run to run and are
left out; nothing else is."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

# step.json keys measured by the clock, not computed: they differ between two runs of the same code
CLOCK_KEYS = {"seconds"}
CLOCK_TABLES = {"timings.parquet"}
# manifest keys of the machine and the moment (and the library versions, which a reference outlives on purpose)
MANIFEST_KEYS = ("model", "model_weights_sha256", "precision", "sampling_engine", "data_per_replicate", "examples")


def _keyed(frame: pl.DataFrame, **keys) -> pl.DataFrame:
    return frame.with_columns(**{f"_{k}": pl.lit(v) for k, v in keys.items()})


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.width]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def collect(root: str | Path) -> dict[str, pl.DataFrame]:
    """Every behaviour-defining table of the run store at `root`, each one frame with key columns `_seed`,
    `_strategy`, `_round` (and `_table` where several tables share a frame), in a stable order."""
    root = Path(root)
    tables: dict[str, list[pl.DataFrame]] = {}
    records = []
    for folder in sorted(root.glob("steps/seed-*/*/round-*")):
        if not (folder / "step.json").exists():
            continue
        seed, strategy, round_ = int(folder.parent.parent.name[5:]), folder.parent.name, int(folder.name[6:])
        record = json.loads((folder / "step.json").read_text())
        for key in CLOCK_KEYS:
            record.pop(key, None)
        if "decision" in record:  # the auto controller's compute check and its lookahead's cost read wall seconds
            record["decision"]["checks"] = [c for c in record["decision"].get("checks", [])
                                            if c.get("rule") != "compute_seconds"]
            record["decision"].get("evidence", {}).get("lookahead", {}).get("cost", {}).pop("seconds", None)
        record["checksums"] = {k: v for k, v in record.get("checksums", {}).items() if k not in CLOCK_TABLES}
        records.append({"_seed": seed, "_strategy": strategy, "_round": round_,
                        "record": json.dumps(record, sort_keys=True, default=str)})
        for path in sorted(folder.glob("*.parquet")):
            if path.name not in CLOCK_TABLES:
                tables.setdefault(path.stem, []).append(
                    _keyed(pl.read_parquet(path), seed=seed, strategy=strategy, round=round_))
    out = {name: _concat(frames) for name, frames in sorted(tables.items())}
    out["step_records"] = pl.DataFrame(records)
    base = []
    for path in sorted(root.glob("signals/seed-*/*.parquet")):
        base.append(_keyed(pl.read_parquet(path), seed=int(path.parent.name[5:]), table=path.stem))
    out["base_signals"] = _concat(base)
    data = []
    for path in sorted(root.glob("data/seed-*/*")):
        if path.suffix == ".json":
            # key order: report.json's counts come from a set, whose order differs between processes
            content = json.dumps(json.loads(path.read_text()), sort_keys=True)
            data.append({"_seed": int(path.parent.name[5:]), "_table": path.name, "content": content})
        elif path.name != "examples.parquet":  # examples: by their hash in the manifest (the text is bulky)
            data.append({"_seed": int(path.parent.name[5:]), "_table": path.name,
                         "content": pl.read_parquet(path).write_csv()})
    out["data_reports"] = pl.DataFrame(data)
    manifest = json.loads((root / "manifest.json").read_text())
    out["manifest"] = pl.DataFrame({"key": list(MANIFEST_KEYS),
                                    "value": [json.dumps(manifest.get(k), sort_keys=True) for k in MANIFEST_KEYS]})
    return out


# Another CPU's float kernels (AVX2 against AVX-512, say) round float32 sums differently. Measured 2026-12-07 between
# the machine that first wrote these references and an AVX2 AMD EPYC: 1.5e-7 relative in the base model's perplexity,
# up to 1.7e-5 in the trained ledger's NLL on smoke and 1.5e-4 on default (more steps drift further), the same
# selections and accuracies. There floats are compared within these tolerances, and everything else (ids,
# selections, counts, texts) still exactly.
REL_TOL, ABS_TOL = 1e-3, 1e-6


def differences(expected: dict[str, pl.DataFrame], actual: dict[str, pl.DataFrame], *, exact: bool = True) -> list[str]:
    """What differs between two collections of tables. `exact`: to the last bit (floats compared exactly, NaN equal to
    NaN); else floats within REL_TOL / ABS_TOL, in the tables' float columns and in the numbers of the step records'
    JSON alike, and everything else exactly."""
    from polars.testing import assert_frame_equal

    out = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual or name not in expected:
            out.append(f"{name}: only in the {'reference' if name in expected else 'new run'}")
            continue
        left, right = expected[name], actual[name]
        if not exact and name == "step_records":
            left, right = left.drop("record"), right.drop("record")
            out += [f"step_records: {problem}" for problem in _records_apart(expected[name], actual[name])]
        try:
            assert_frame_equal(left, right, check_exact=exact, check_column_order=False, rel_tol=REL_TOL,
                               abs_tol=ABS_TOL)
        except AssertionError as err:
            out.append(f"{name}: {str(err).splitlines()[0][:400]}")
    return out


def _records_apart(expected: pl.DataFrame, actual: pl.DataFrame) -> list[str]:
    if expected.height != actual.height:
        return [f"{expected.height} records in the reference, {actual.height} in the new run"]
    out = []
    for a, b in zip(expected.sort(["_seed", "_strategy", "_round"]).iter_rows(named=True),
                    actual.sort(["_seed", "_strategy", "_round"]).iter_rows(named=True)):
        where = f"seed {a['_seed']} {a['_strategy']} round {a['_round']}"
        if (a["_seed"], a["_strategy"], a["_round"]) != (b["_seed"], b["_strategy"], b["_round"]):
            out.append(f"{where} against seed {b['_seed']} {b['_strategy']} round {b['_round']}")
        else:
            out += [f"{where}: {path}" for path in _json_apart(json.loads(a["record"]), json.loads(b["record"]), "")]
    return out[:10]


def _json_apart(a, b, path: str) -> list[str]:
    """The paths where two JSON values differ: floats beyond the tolerances, anything else at all. A step record's
    table checksums hash the tables' float bytes, so they are left to the table comparisons."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path or '/'}: keys {sorted(a.keys() ^ b.keys())}"]
        return [p for k in a if k != "checksums" for p in _json_apart(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items against {len(b)}"]
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in _json_apart(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
                and (a == b or abs(a - b) <= ABS_TOL + REL_TOL * abs(b)):
            return []
        return [f"{path}: {a!r} against {b!r}"]
    return [] if a == b else [f"{path}: {a!r} against {b!r}"]
