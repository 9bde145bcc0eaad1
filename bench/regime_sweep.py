"""Run several candidate regimes of the embedded default side by side and tabulate what matters.

For each regime (a list of dotted overrides on the `default` preset): round-0 dynamics (train accuracy,
pre-memorization accuracy, memorized share, test accuracy, train-test gap), how selective premem was,
each strategy's final accuracy and data-efficiency ratio against random. This is how the default preset
was chosen; rerun it after changing the task, the base or the trainer.

    python bench/regime_sweep.py --out /tmp/sweep --parallel 4 [--device cuda] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REGIMES: dict[str, list[str]] = {
    "n64-e12-lr1e-3": [],
    "n64-e12-lr3e-4": ["train.learning_rate=3e-4"],
    "n64-e16-lr5e-4": ["train.epochs=16", "train.learning_rate=5e-4"],
    "n32-e16-lr1e-3": ["data.n_seeds=32", "data.pool_per_seed=8", "train.epochs=16",
                       "selection.budgets=[32,32]", "selection.iid_extra_budgets=[64]"],
    "n128-e8-lr1e-3": ["data.n_seeds=128", "train.epochs=8", "selection.budgets=[128,128]",
                       "selection.iid_extra_budgets=[256]"],
    "n64-e12-lr1e-3-floor1.1": ["dynamics.floor_scale=1.1"],
    "n64-e12-lr1e-3-t0.5": ["selection.strategies=[{name: random}, {name: loss}, {name: perplexity}, "
                            "{name: premem, params: {threshold: 0.5}}]"],
}

RUNNER = """
import sys
from loop.config import build_config
from loop.run.engine import Engine
from reports.run import write_run_report
cfg = build_config("default", overrides=sys.argv[1:])
Engine(cfg).run_all(progress=False)
print(write_run_report(cfg.out_dir))
"""


def run(name: str, overrides: list[str], out: Path, extra: list[str]) -> Path:
    run_dir = out / name
    log = open(out / f"{name}.log", "w")
    args = [*overrides, *extra, f"out_dir={run_dir}"]
    subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                   env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    return run_dir


def describe(name: str, run_dir: Path) -> dict:
    summary_path = run_dir / "report" / "summary.json"
    if not summary_path.exists():
        return {"regime": name, "error": "no report (see the log)"}
    summary = json.loads(summary_path.read_text())
    steps = [json.loads(p.read_text()) for p in run_dir.glob("steps/seed-*/*/round-*/step.json")]
    r0 = [s for s in steps if s["round"] == 0]
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None  # noqa: E731
    row = {"regime": name,
           "r0_test": mean([s["accuracy"] for s in r0]),
           "r0_train": mean([s.get("train_accuracy_last_epoch", 0) for s in r0]),
           "r0_premem": mean([s.get("premem_mean", 0) for s in r0]),
           "r0_memorized": mean([s.get("memorized_last_epoch", 0) for s in r0]),
           "premem_eligible_r1": mean([s["score_mean_all"] for s in steps
                                       if s["strategy"] == "premem" and s["round"] == 1]),
           "premem_eligible_r2": mean([s["score_mean_all"] for s in steps
                                       if s["strategy"] == "premem" and s["round"] == 2])}
    for strategy, block in summary["strategies"].items():
        final = block["points"][-1] if strategy != "random" else None
        ratio = block.get("ratio") or {}
        if final:
            row[f"{strategy}_acc"] = round(final["accuracy_mean"], 3)
        row[f"{strategy}_ratio"] = None if ratio.get("mean") is None else (
            f"{ratio['mean']:.2f} [{ratio['ci_low']:.2f},{ratio['ci_high']:.2f}]{ratio.get('bound') or ''}")
    random_points = {p["n_examples"]: round(p["accuracy_mean"], 3) for p in summary["strategies"]["random"]["points"]}
    row["random_curve"] = random_points
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", default=None, help="e.g. [0,1,2,3,4]")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("overrides", nargs="*", help="dotted overrides applied to every regime")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = [f"device={args.device}", "torch_threads=1", *args.overrides] + ([f"seeds={args.seeds}"] if args.seeds else [])
    chosen = {k: v for k, v in REGIMES.items() if not args.only or k in args.only}
    rows = []

    def one(item):
        row = describe(item[0], run(item[0], item[1], out, extra))
        rows.append(row)  # list.append is atomic; the file is rewritten as each regime finishes
        (out / "sweep.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(row), flush=True)

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(one, chosen.items()))


if __name__ == "__main__":
    main()
