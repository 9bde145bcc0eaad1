"""Run a preset through the engine alone (no Prefect) and print each step's time per stage.

    python bench/run_engine.py --preset smollm2-gsm8k --out DIR [--no-report] [--workers N] [key=value ...]
    python bench/run_engine.py --analyze --preset analyze-smollm2-gsm8k --out DIR [--workers N] [key=value ...]

For machines where the Prefect stack is not installed (a lent GPU): the same steps, store and report as
`curation-loop run`, without the flow around them. With --workers N (default: the config's `workers`), N spawned
processes run the steps whose parent is done, as the flow's process pool does; each holds one Engine.
--analyze runs the paper's analyses instead (the predict-generalization flow's sweep and report).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from multiprocessing import get_context
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop.analysis.sweep import Sweep, SweepRun, plan_runs  # noqa: E402
from loop.config import build_config  # noqa: E402
from loop.run.engine import Engine  # noqa: E402
from loop.run.plan import Step, plan_steps, step_inputs  # noqa: E402
from loop.model.devices import check_workers  # noqa: E402

def _step_line(engine: Engine, cfg, step: Step, info: dict, seconds: float) -> str:
    """One comparison step's line: its wall time, what it trained and measured, and its time per stage."""
    stages = engine.store.step_frame(step.seed, step.strategy, step.round, "timings")
    by_stage = ", ".join(f"{s} {x:.1f}" for s, x in zip(stages["stage"], stages["seconds"]))
    return (f"{step.label}: {seconds:.1f}s wall, {info['n_examples']} examples, "
            f"accuracy {info['accuracy']:.3f}, premem {info.get('premem_mean')}, memorized "
            f"{info.get('memorized_last_epoch')}, sampled {info['dynamics_sequences_sampled']} of "
            f"{info['dynamics_sequences_if_all']} | {by_stage}")


def _die_with_parent() -> None:
    """Worker initializer: on Linux, end this worker when the runner dies (a killed runner would otherwise leave
    its workers training to the end of their current step, competing with the next run)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _sweep_line(sweep: Sweep, cfg, run: SweepRun, info: dict, seconds: float) -> str:
    """One analysis run's line: its wall time, how many examples it trained on, and its time per stage."""
    stages = json.dumps({k: round(v, 1) for k, v in _run_stages(cfg, run).items()})
    return f"{run.label} (seed {run.seed}): {seconds:.1f}s wall, {info['n_trained']} trained | {stages}"


# What a worker holds and does: a comparison's Engine runs Steps, the analysis's Sweep runs SweepRuns. The kind is
# passed by name, so that a task pickles to the spawned workers as a string.
_JOBS = {"step": (Engine, "run_step", _step_line), "sweep": (Sweep, "run", _sweep_line)}
_HELD: dict[str, Engine | Sweep] = {}  # one Engine or Sweep per worker process, built on its first task


def _in_worker(kind: str, cfg, item: Step | SweepRun | None) -> str:
    """Prepare (item None) or do one item in this worker's Engine (kind "step") or Sweep (kind "sweep"); returns
    the line to print."""
    build, method, line = _JOBS[kind]
    if kind not in _HELD:
        _HELD[kind] = build(cfg)
    held = _HELD[kind]
    t0 = time.perf_counter()
    if item is None:
        held.prepare()
        return f"prepare: {time.perf_counter() - t0:.1f}s"
    info = getattr(held, method)(item)
    return line(held, cfg, item, info, time.perf_counter() - t0)


def _run_stages(cfg, run: SweepRun) -> dict:
    import polars as pl

    from loop.analysis.sweep import run_dir

    frame = pl.read_parquet(run_dir(Path(cfg.out_dir), run) / "timings.parquet")
    return dict(zip(frame["stage"].to_list(), frame["seconds"].to_list()))


def run_sweep(cfg, workers: int) -> None:
    """The analysis sweep: prepare once, then every run (they are independent) on `workers` processes."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_die_with_parent) as pool:
        print(pool.submit(_in_worker, "sweep", cfg, None).result(), flush=True)
        for future in as_completed([pool.submit(_in_worker, "sweep", cfg, run) for run in plan_runs(cfg)]):
            print(future.result(), flush=True)


def run_parallel(cfg, workers: int) -> None:
    """Every step of `plan_steps`, each submitted once its parent is done, on `workers` spawned processes."""
    steps = plan_steps(cfg)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_die_with_parent) as pool:
        print(pool.submit(_in_worker, "step", cfg, None).result(), flush=True)
        done: set[Step] = set()
        running = {}
        waiting = list(steps)
        while waiting or running:
            for step in [s for s in waiting if all(i in done for i in step_inputs(cfg, s))]:
                waiting.remove(step)
                running[pool.submit(_in_worker, "step", cfg, step)] = step
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                print(future.result(), flush=True)
                done.add(running.pop(future))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--analyze", action="store_true", help="the paper's analyses (the sweep) instead of a comparison")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: the config's workers)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = build_config(args.preset, overrides=[*args.overrides, f"out_dir={args.out}"])
    workers = args.workers or cfg.workers
    started = time.perf_counter()
    if args.analyze:
        check_workers(workers, cfg.device, share_gpus=cfg.share_gpus)
        run_sweep(cfg, workers)
        print(f"all runs: {time.perf_counter() - started:.1f}s", flush=True)
        if not args.no_report:
            from reports.analysis import write_analysis_report

            path = write_analysis_report(cfg.out_dir)
            print(f"report: {path}")
            summary = json.loads((path.parent / "summary.json").read_text())
            summary["generalization"].pop("points")
            summary["tau"].pop("curve")
            print(json.dumps(summary, indent=1)[:6000])
        return 0
    if workers > 1:
        check_workers(workers, cfg.device, share_gpus=cfg.share_gpus)
        run_parallel(cfg, workers)
    else:  # in this process, as one worker would: prepare, then every step in plan order
        try:
            for step in [None, *plan_steps(cfg)]:
                print(_in_worker("step", cfg, step), flush=True)
        finally:
            if "step" in _HELD:
                _HELD["step"].close()
    print(f"all steps: {time.perf_counter() - started:.1f}s", flush=True)
    if not args.no_report:
        from reports.run import write_run_report

        path = write_run_report(cfg.out_dir)
        print(f"report: {path}")
        summary = Path(cfg.out_dir) / "report" / "summary.json"
        if summary.is_file():
            print(json.dumps(json.loads(summary.read_text()), indent=1)[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
