"""Run a preset through the engine alone (no Prefect) and print each step's time per stage.

    python bench/run_engine.py --preset smollm2-gsm8k --out DIR [--no-report] [key=value ...]

For machines where the Prefect stack is not installed (a lent GPU): the same steps, store and report as
`curation-loop run`, without the flow around them.
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

from loop.config import build_config  # noqa: E402
from loop.engine import Engine, plan_steps  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = build_config(args.preset, overrides=[*args.overrides, f"out_dir={args.out}"])
    engine = Engine(cfg)
    started = time.perf_counter()
    engine.prepare()
    print(f"prepare: {time.perf_counter() - started:.1f}s", flush=True)
    try:
        for step in plan_steps(cfg):
            t0 = time.perf_counter()
            info = engine.run_step(step)
            stages = engine.store.step_frame(step.seed, step.strategy, step.round, "timings")
            by_stage = ", ".join(f"{s} {x:.1f}" for s, x in zip(stages["stage"], stages["seconds"]))
            print(f"{step.label}: {time.perf_counter() - t0:.1f}s wall, {info['n_examples']} examples, "
                  f"accuracy {info['accuracy']:.3f}, premem {info.get('premem_mean')}, memorized "
                  f"{info.get('memorized_last_epoch')}, sampled {info['dynamics_sequences_sampled']} of "
                  f"{info['dynamics_sequences_if_all']} | {by_stage}", flush=True)
    finally:
        engine.close()
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
