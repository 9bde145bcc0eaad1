"""Wall time of the main job (`default` preset) and of the `smoke` preset, end to end through the CLI.

Each preset runs `--repeats` times in a fresh output folder, as a new user would (a cold Python process:
imports, Prefect's temporary server, every step, the report). Reports the median and the ratio
default/smoke, with the machine and the date, and appends one JSON line to bench/results.jsonl.
Timings on a shared 2-core machine are noisy: compare ratios measured in one run, not absolute seconds.

    python bench/bench_main.py --presets smoke default --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(preset: str, keep: Path | None) -> float:
    """Seconds for one cold run of `preset`; its run folder is kept under `keep` when given."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{preset}-") as tmp:
        out = Path(tmp) if keep is None else keep / f"{preset}-{time.strftime('%Y%m%dT%H%M%S')}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flows.cli", "run", "--preset", preset, "--out", str(out)],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "default"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="keep each run folder (and its report) here")
    args = parser.parse_args()
    medians = {}
    for preset in args.presets:
        times = [run_once(preset, args.keep) for _ in range(args.repeats)]
        medians[preset] = statistics.median(times)
        print(f"{preset:<10} median {medians[preset]:7.1f} s over {len(times)} run(s): {[round(t, 1) for t in times]}")
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
              "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "median_seconds": medians}
    if "smoke" in medians and "default" in medians:
        record["default_over_smoke"] = medians["default"] / medians["smoke"]
        print(f"default / smoke = {record['default_over_smoke']:.1f}")
    with open(ROOT / "bench" / "results.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
