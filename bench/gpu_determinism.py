"""Does a recomputed step repeat on a GPU, and what does `deterministic: true` cost?

    python bench/gpu_determinism.py --out DIR [--preset default-gpu] [key=value ...]

Runs the same comparison twice with `deterministic: false` and twice with `deterministic: true` (one process, the
steps in order, each pair in its own run folders), times each run, and compares every table of every step (timings
aside) between the two runs of a pair: bit for bit, and by the largest difference of a float column. A resume
recomputes an unfinished step exactly as the second run computes it, so the pair tells what a resume repeats.
Prints one JSON object (and writes it to DIR/determinism.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from loop.config import build_config  # noqa: E402
from loop.run.engine import Engine  # noqa: E402

SMALL = ["seeds=[0, 1]", "selection.strategies=[random, loss, premem]", "selection.compute_matched=false",
         "selection.iid_extra_budgets=[]", "workers=1"]


def tables(out: Path) -> dict[str, pl.DataFrame]:
    return {str(p.relative_to(out)): pl.read_parquet(p) for p in sorted(out.glob("steps/*/*/round-*/*.parquet"))
            if p.name != "timings.parquet"}


def compare(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> dict:
    """Tables equal bit for bit, selections equal, and the largest absolute difference of any float column."""
    equal, selections_equal, largest, unequal = 0, 0, 0.0, []
    for key, frame in a.items():
        other = b[key]
        equal += frame.equals(other)
        if not frame.equals(other):
            unequal.append(key)
        if key.endswith("selected.parquet"):
            selections_equal += frame["id"].to_list() == other["id"].to_list()
        for name, dtype in frame.schema.items():
            if dtype.is_float() and frame.height == other.height:
                diff = (frame[name] - other[name]).abs().max()
                if diff is not None and diff == diff:
                    largest = max(largest, float(diff))
    n_selected = sum(k.endswith("selected.parquet") for k in a)
    return {"tables": len(a), "tables_equal": equal, "selections": n_selected, "selections_equal": selections_equal,
            "largest_float_difference": largest, "first_unequal": sorted(unequal)[:6]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="default-gpu")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    result = {"date": time.strftime("%Y-%m-%d"), "preset": args.preset, "overrides": [*SMALL, *args.overrides]}
    for deterministic in (False, True):
        seconds, found = [], []
        for repeat in (1, 2):
            out = args.out / f"deterministic-{str(deterministic).lower()}-{repeat}"
            cfg = build_config(args.preset, overrides=[*SMALL, *args.overrides, f"out_dir={out}",
                                                       f"deterministic={str(deterministic).lower()}"])
            started = time.perf_counter()
            try:
                Engine(cfg).run_all(progress=False)
            except Exception as err:  # an operation without a deterministic kernel raises: that is a finding
                result[f"deterministic_{str(deterministic).lower()}"] = {"error": f"{type(err).__name__}: {err}"[:800]}
                break
            seconds.append(time.perf_counter() - started)
            found.append(tables(out))
        else:
            result[f"deterministic_{str(deterministic).lower()}"] = {
                "seconds": [round(s, 1) for s in seconds], **compare(*found)}
    if all("seconds" in result.get(f"deterministic_{m}", {}) for m in ("false", "true")):
        slow = min(result["deterministic_true"]["seconds"]) / min(result["deterministic_false"]["seconds"])
        result["time_ratio_deterministic_to_default"] = round(slow, 3)
    try:
        import torch

        result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        result["torch"] = torch.__version__
    except Exception:  # noqa: BLE001
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "determinism.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
