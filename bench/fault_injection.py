"""Fault injection: kill a curation run with SIGKILL at random points of every stage, resume it, and check that it
ends with exactly the selections, ledgers and measurements of an uninterrupted run, with no half-written file.

    python bench/fault_injection.py --out /tmp/faults --trials 30 --timed 8 --prefect 4

1. A reference run, uninterrupted, counts how often it reaches each fault point (`loop.faults`: optimizer steps,
   checkpoint sampling, NLL batches, signals, selection, test evaluation, store and step renames, report renames,
   Prefect tasks).
2. Point trials: the k-th arrival at a point kills the run's process group (points taken in turn, so every stage
   is hit; k uniform over the reference's arrivals there). Some trials kill twice (a resume killed again).
3. Timed trials: a SIGKILL of the group at a uniform moment of the reference's wall time (between points, mid-write).
4. Prefect trials: the same through `curation-loop run` (its Prefect server, the flow, its tasks).
5. Remote trials: the run store at a file:// URL (worked on in a local copy, `loop.store.sync`), killed anywhere,
   pushes included; the outcome is read from the location, as another machine would read it.
After each kill: every committed file is readable and every step folder's tables match the checksums its record
holds; then the run is resumed to the end and compared with the reference (every table of every step and of the
run's signals and data, every step record but its seconds and checksums, the report's summary but its timings).
Results go to --out/fault-injection.json; the figures of a run are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop.faults import POINTS  # noqa: E402

# A small comparison that still reaches every stage: base signals (ifd), dynamics, two rounds of three strategies.
OVERRIDES = ["workers=1", "data.n_seeds=8", "data.n_test=8", "data.n_dev=4", "selection.budgets=[4, 4]",
             "selection.strategies=[random, premem, loss, ifd]"]
ENGINE_RUN = """
import sys
from loop.config import build_config
from loop.run.engine import Engine
from reports.run import write_run_report
cfg = build_config("smoke", overrides=sys.argv[1:])
Engine(cfg).run_all(progress=False)
write_run_report(cfg.out_dir)
"""


def location(mode: str, out: Path) -> Path:
    """Where a trial's run store lies: its folder, or for the remote mode the folder behind its URL."""
    return out / "remote" if mode == "remote" else out


def command(mode: str, out: Path) -> list[str]:
    overrides = [*OVERRIDES, f"out_dir={out}"]
    if mode == "remote":
        overrides = [*OVERRIDES, f"out_dir=file://{location(mode, out)}", f"scale.cache_dir={out / 'copy'}"]
    if mode == "prefect":
        return [sys.executable, "-m", "flows.cli", "run", "--preset", "smoke", *overrides]
    return [sys.executable, "-c", ENGINE_RUN, *overrides]


def launch(mode: str, out: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false", **env_extra}
    log = open(out.parent / f"{out.name}.log", "a")
    return subprocess.Popen(command(mode, out), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: the kill takes it and its children


def run(mode: str, out: Path, env_extra: dict[str, str] | None = None, kill_after_s: float | None = None) -> int:
    proc = launch(mode, out, env_extra or {})
    try:
        return proc.wait(timeout=kill_after_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -signal.SIGKILL
    finally:
        try:  # what the run started outlives a kill of its leader only if it left the group; make sure
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _without(record, dropped=("seconds", "checksums", "wall", "timings", "created", "disk_bytes")):
    if isinstance(record, dict):
        return {k: _without(v) for k, v in record.items()
                if not any(d in k for d in dropped)}
    if isinstance(record, list):  # the report's note of the store's size is a measurement of the disk
        return [_without(v) for v in record if not (isinstance(v, str) and " on disk" in v)]
    return record


def outcome(out: Path) -> dict[str, object]:
    """What a finished run decided and measured, keyed by file: tables as rows, records without times (nor the
    disk use, which a resume's entry in manifest.json changes)."""
    found: dict[str, object] = {}
    for path in sorted(out.rglob("*.parquet")):
        if path.name == "timings.parquet":
            continue
        found[str(path.relative_to(out))] = pl.read_parquet(path).to_dicts()
    def record(path: Path):  # the run folder's own path is not an outcome
        return _without(json.loads(path.read_text().replace(str(out.resolve()), "OUT").replace(str(out), "OUT")))

    for path in sorted(out.glob("steps/*/*/round-*/step.json")):
        found[str(path.relative_to(out))] = record(path)
    found["report/summary.json"] = record(out / "report" / "summary.json")
    return found


def integrity(out: Path) -> list[str]:
    """Problems a killed run left: a committed file that does not read, a step folder whose tables do not match
    its record's checksums. Leftovers of a rename that never happened (.NAME.tmp-PID) are counted, not problems:
    nothing reads them and the next open sweeps them; nor is a remote step folder without its record (a push cut
    short), which no reader takes."""
    from loop.store import RunStore

    problems = []
    for path in out.rglob("*") if out.exists() else []:
        if not path.is_file() or ".tmp-" in str(path.relative_to(out)):
            continue
        step = next((p for p in path.parents if p.name.startswith("round-")), None)
        if step is not None and not (step / "step.json").exists():
            continue  # a remote folder whose push was cut short: not committed, so never read
        try:
            if path.suffix == ".parquet":
                pl.read_parquet(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as err:  # noqa: BLE001 - any unreadable file is the finding
            problems.append(f"{path}: {type(err).__name__}: {err}")
    store = RunStore(out)
    for record in out.glob("steps/*/*/round-*/step.json"):
        try:
            store.verify(record.parent)
        except Exception as err:  # noqa: BLE001
            problems.append(str(err))
    return problems


def trial(mode: str, out: Path, kills: list[str | float], reference: dict) -> dict:
    """Kill the run as `kills` say (a 'point:k' or a time in seconds each), then resume it uninterrupted."""
    shutil.rmtree(out, ignore_errors=True)
    result = {"mode": mode, "kills": kills, "killed": 0, "problems": [], "leftovers": 0}
    for kill in kills:
        if isinstance(kill, str):
            rc = run(mode, out, {"CURATION_LOOP_KILL_AT": kill})
        else:
            rc = run(mode, out, kill_after_s=kill)
        result["killed"] += rc == -signal.SIGKILL
        if rc not in (0, -signal.SIGKILL):
            result["problems"].append(f"the run failed with {rc} instead of being killed (see {out}.log)")
        result["problems"] += integrity(location(mode, out))
        result["leftovers"] += sum(1 for _ in out.rglob(".*.tmp-*"))
    rc = run(mode, out)
    if rc != 0:
        result["problems"].append(f"the resume failed with {rc} (see {out}.log)")
        return result
    got = outcome(location(mode, out))
    for key in sorted(set(reference) | set(got)):
        if reference.get(key) != got.get(key):
            result["problems"].append(f"{key} differs from the uninterrupted run")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=30, help="point trials of the engine")
    parser.add_argument("--double", type=float, default=0.25, help="share of point trials killed twice")
    parser.add_argument("--timed", type=int, default=8, help="timed trials of the engine")
    parser.add_argument("--prefect", type=int, default=4, help="point trials through curation-loop run (Prefect)")
    parser.add_argument("--remote", type=int, default=0, help="point trials with the run store at a file:// URL")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    references, counts, walls = {}, {}, {}
    modes = ["engine", *(["prefect"] if args.prefect else []), *(["remote"] if args.remote else [])]
    for mode in modes:
        out, log = args.out / f"reference-{mode}", args.out / f"reference-{mode}.points"
        shutil.rmtree(out, ignore_errors=True)
        log.unlink(missing_ok=True)
        started = time.perf_counter()
        if run(mode, out, {"CURATION_LOOP_FAULT_LOG": str(log)}) != 0:
            sys.exit(f"the reference run failed: see {out}.log")
        walls[mode] = time.perf_counter() - started
        counts[mode] = Counter(log.read_text().split())
        references[mode] = outcome(location(mode, out))
        print(f"reference ({mode}): {walls[mode]:.0f}s, points {dict(counts[mode])}", flush=True)
    for mode in modes[1:]:
        if references[mode] != references["engine"]:
            print(f"note: the {mode} run's outcome differs from the engine's", flush=True)

    def draw(mode: str, index: int) -> str:
        reached = [p for p in POINTS if counts[mode][p]]
        if mode == "prefect":  # the Prefect trials first at the task boundaries, the stage only they reach
            reached = ["prefect.task", *[p for p in reached if p != "prefect.task"]]
        point = reached[index % len(reached)]
        return f"{point}:{rng.randint(1, counts[mode][point])}"

    plans = []
    for i in range(args.trials):
        kills = [draw("engine", i)]
        if rng.random() < args.double:
            kills.append(draw("engine", rng.randrange(len(POINTS))))
        plans.append(("engine", kills))
    plans += [("engine", [round(rng.uniform(2.0, walls["engine"]), 1)]) for _ in range(args.timed)]
    plans += [("prefect", [draw("prefect", 0 if i % 2 == 0 else i + 3)]) for i in range(args.prefect)]
    # Remote trials: half at the pushes (the new stage), half at the other stages in turn.
    plans += [("remote", [f"remote.push:{rng.randint(1, counts['remote']['remote.push'])}" if i % 2 == 0
                          else draw("remote", i)]) for i in range(args.remote)]

    results = []
    for i, (mode, kills) in enumerate(plans):
        started = time.perf_counter()
        result = trial(mode, args.out / f"trial-{i:03d}", kills, references[mode])
        result["seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        print(f"trial {i:3d} {mode:<7} kills {kills}: killed {result['killed']}, "
              f"{'OK' if not result['problems'] else 'PROBLEMS ' + '; '.join(result['problems'][:3])}", flush=True)
        if not result["problems"]:
            shutil.rmtree(args.out / f"trial-{i:03d}", ignore_errors=True)

    covered = sorted({k.rpartition(":")[0] for r in results for k in r["kills"] if isinstance(k, str)})
    summary = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPU cores", "config": OVERRIDES,
        "reference_seconds": {m: round(s, 1) for m, s in walls.items()},
        "points_reached": {m: dict(c) for m, c in counts.items()},
        "trials": len(results), "kills": sum(r["killed"] for r in results),
        "kill_points_covered": covered, "kill_points_not_reached": [p for p in POINTS if p not in covered],
        "trials_equal_to_uninterrupted": sum(not r["problems"] for r in results),
        "leftover_temp_files_swept": sum(r["leftovers"] for r in results),
        "results": results,
    }
    (args.out / "fault-injection.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=2))
    sys.exit(0 if summary["trials_equal_to_uninterrupted"] == len(results) else 1)


if __name__ == "__main__":
    main()
