"""Does sharded scoring compute what the step's own process computes, on this device, and what does the checkpoint
hand-off cost?

    python bench/shard_equality.py --out DIR [--preset default-gpu] [--unit 16] [key=value ...]

Runs one comparison four times: twice in the step's process (the control: what equality means on this device),
then with every checkpoint saved and reloaded by shards (`loop.model.shards.ShardedBackend` on a `LocalExecutor`:
the shards run one after another in this process, so the figure is the hand-off's cost, not a speed-up) in 1 and
in 3 shards. Every call is cut into units of `--unit`
items, so each call is several units. Compares every table of every step (timings aside) with the in-process
run's, bit for bit, and times the runs. On a GPU, run it with deterministic=true: without it, two in-process runs
already differ (bench/gpu_determinism.py). Prints one JSON object (and writes DIR/shard-equality.json).
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

from bench.gpu_determinism import compare, tables  # noqa: E402
from loop.config import build_config  # noqa: E402
from loop.run.engine import Engine  # noqa: E402
from loop.model.backends import close_backends  # noqa: E402
from loop.model.shards import LocalExecutor  # noqa: E402

SMALL = ["seeds=[0]", "selection.strategies=[random, loss, premem]", "selection.compute_matched=false",
         "selection.iid_extra_budgets=[]", "workers=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="default-gpu")
    parser.add_argument("--unit", type=int, default=16)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = [*SMALL, f"sampling.unit={args.unit}", *args.overrides]
    result = {"date": time.strftime("%Y-%m-%d"), "preset": args.preset, "overrides": overrides, "runs": {}}
    found = {}
    for name, shards in (("in_process", None), ("in_process_again", None), ("shards_1", 1), ("shards_3", 3)):
        out = args.out / name
        cfg = build_config(args.preset, overrides=[*overrides, f"out_dir={out}",
                                                   f"scale.scoring.shards={shards or 1}"])
        started = time.perf_counter()
        Engine(cfg, None if shards is None else LocalExecutor()).run_all(progress=False)
        close_backends()
        result["runs"][name] = {"seconds": round(time.perf_counter() - started, 1)}
        found[name] = tables(out)
    for name in ("in_process_again", "shards_1", "shards_3"):
        result["runs"][name] |= compare(found["in_process"], found[name])
        result["runs"][name]["time_ratio_to_in_process"] = round(
            result["runs"][name]["seconds"] / result["runs"]["in_process"]["seconds"], 3)
    import torch

    result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result["torch"] = torch.__version__
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shard-equality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
