"""Throughput of each stage of the embedded default, on this machine: sampling, teacher-forced NLL, training.

- sampling: the 200 test questions x 2 samples (the default evaluation: 400 sequences), T 0.8, top-p 0.95, at
  most 96 new tokens, with each engine (`decode`: the decode loop; `generate`: `model.generate`) at several
  batch sizes. Sequences/s, and new tokens/s counting the tokens of the returned completions (cut at the stop
  text), so both engines are credited with the same useful work.
- nll: `loop.model.scoring.mean_nll` over the seed and pool examples in the training format; tokens/s.
- training: `loop.model.training.train_round` on 64 seeds for 2 epochs; tokens/s (prompt + target tokens seen).

Each number is the median of `--repeats` runs after one warm-up call (wall seconds, and the process's CPU
seconds beside them); the two engines alternate within each repeat. Prints a table with the ratios
decode/generate and appends one JSON line to bench/results.jsonl, with the machine, the date and the load
average before and after (the machine is shared: compare ratios measured in one run, not absolute speeds).

    python bench/bench_stages.py [--repeats 3] [--batch-sizes 64 256 512] [--stages sampling nll training] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import polars as pl  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from loop.config import build_config  # noqa: E402
from loop.embedded.task import make_task  # noqa: E402
from loop.model.formatting import encode_example  # noqa: E402
from loop.model.loading import load_base, load_tokenizer  # noqa: E402
from loop.model.sampling import DecodeLoopSampler, TransformersSampler  # noqa: E402
from loop.model.scoring import mean_nll  # noqa: E402
from loop.model.training import train_round  # noqa: E402

CPU = torch.device("cpu")
ENGINES = {"decode": DecodeLoopSampler, "generate": TransformersSampler}


def machine() -> dict:
    return {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def measure(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Median wall and CPU seconds of each run, after one warm-up call of each (first-call allocations and lazy
    initialisation are not the steady state). The runs alternate within each repeat, so a change of load on
    the shared machine hits all of them alike and their ratios stay fair."""
    for run in runs.values():
        run()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    return {name: {"median_s": round(statistics.median(wall[name]), 3), "cpu_s": round(statistics.median(cpu[name]), 3),
                   "times_s": [round(t, 3) for t in wall[name]]} for name in runs}


def bench_sampling(cfg, model, tok, questions: list[str], n: int, batch_sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    sequences = len(questions) * n
    for batch_size in batch_sizes:
        sampling = cfg.sampling.model_copy(update={"batch_size": batch_size})
        samplers = {engine: cls(model, tok, sampling, cfg.model.format) for engine, cls in ENGINES.items()}
        completions: dict[str, list[list[str]]] = {}

        def runner(engine: str) -> Callable[[], None]:
            def run() -> None:
                completions[engine] = samplers[engine].sample(questions, n, seed=0)
            return run

        timings = measure({engine: runner(engine) for engine in samplers}, repeats)
        for engine, timing in timings.items():
            new_tokens = sum(len(tok(c, add_special_tokens=False)["input_ids"])
                             for comps in completions[engine] for c in comps)
            seconds = timing["median_s"]
            rows.append({"stage": "sampling", "engine": engine, "batch_size": batch_size, **timing,
                         "sequences": sequences, "new_tokens": new_tokens,
                         "sequences_per_s": round(sequences / seconds, 1),
                         "tokens_per_s": round(new_tokens / seconds, 1)})
            print(_line(rows[-1]), flush=True)
    return rows


def bench_nll(model, tok, examples: pl.DataFrame, batch_sizes: list[int], repeats: int) -> list[dict]:
    encoded = [encode_example(tok, q, s) for q, s in zip(examples["question"], examples["solution"])]
    sequences = [e.input_ids for e in encoded]
    score_from = [e.n_prompt for e in encoded]
    tokens = sum(len(s) for s in sequences)
    rows = []
    for batch_size in batch_sizes:
        timing = measure({"nll": lambda: mean_nll(model, sequences, score_from, pad_id=tok.pad_token_id,
                                                  batch_size=batch_size)}, repeats)["nll"]
        seconds = timing["median_s"]
        rows.append({"stage": "nll", "batch_size": batch_size, **timing, "sequences": len(sequences), "tokens": tokens,
                     "sequences_per_s": round(len(sequences) / seconds, 1), "tokens_per_s": round(tokens / seconds, 1)})
        print(_line(rows[-1]), flush=True)
    return rows


def bench_training(cfg, tok, seeds: pl.DataFrame, repeats: int) -> list[dict]:
    tokens = cfg.train.epochs * sum(len(encode_example(tok, q, s, cfg.model.format).input_ids)
                                    for q, s in zip(seeds["question"], seeds["solution"]))
    timing = measure({"training": lambda: train_round(cfg, tok, seeds, seed=0, device=CPU)}, repeats)["training"]
    seconds = timing["median_s"]
    row = {"stage": "training", "batch_size": cfg.train.batch_size, "epochs": cfg.train.epochs,
           "examples": seeds.height, **timing, "tokens": tokens,
           "tokens_per_s": round(tokens / seconds, 1),
           "sequences_per_s": round(cfg.train.epochs * seeds.height / seconds, 1)}
    print(_line(row), flush=True)
    return [row]


def _line(row: dict) -> str:
    name = row["stage"] + (f"/{row['engine']}" if "engine" in row else "")
    return (f"{name:<20} batch {row['batch_size']:>4}  {row['median_s']:8.2f} s (cpu {row['cpu_s']:7.2f} s)"
            f"  {row['sequences_per_s']:9.1f} seq/s  {row['tokens_per_s']:10.1f} tok/s   runs {row['times_s']}")


def ratios(rows: list[dict]) -> dict[str, float]:
    """decode/generate throughput (sequences/s) at each batch size measured with both engines."""
    by = {(r["engine"], r["batch_size"]): r for r in rows if r["stage"] == "sampling"}
    return {str(bs): round(by["decode", bs]["sequences_per_s"] / by["generate", bs]["sequences_per_s"], 2)
            for (engine, bs) in by if engine == "decode" and ("generate", bs) in by}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--stages", nargs="+", choices=["sampling", "nll", "training"],
                        default=["sampling", "nll", "training"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the preset's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.jsonl",
                        help="JSON lines file to append to")
    args = parser.parse_args()

    cfg = build_config("default", overrides=["train.epochs=2"])
    threads = args.threads or getattr(cfg, "torch_threads", None)
    if threads:
        torch.set_num_threads(threads)
    record = {"bench": "stages", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **machine(),
              "load_before": os.getloadavg(), "repeats": args.repeats}
    print(f"{record['date']}  {record['machine']}  {record['processor']}  cpus {record['cpus']}  "
          f"torch threads {record['torch_threads']}  load {record['load_before']}")
    tok = load_tokenizer(cfg.model)
    model = load_base(cfg.model, CPU).eval()
    task = make_task(n_seeds=64, pool_per_seed=cfg.data.pool_per_seed, n_dev=0, n_test=200, seed=cfg.data.data_seed)
    rows: list[dict] = []
    if "sampling" in args.stages:
        questions = task.filter(pl.col("split") == "test")["question"].to_list()
        rows += bench_sampling(cfg, model, tok, questions, cfg.evaluation.n_samples, args.batch_sizes, args.repeats)
    if "nll" in args.stages:
        scored = task.filter(pl.col("split").is_in(["seed", "pool"]))
        rows += bench_nll(model, tok, scored, args.batch_sizes, args.repeats)
    if "training" in args.stages:
        rows += bench_training(cfg, tok, task.filter(pl.col("split") == "seed"), args.repeats)
    record.update(rows=rows, decode_over_generate=ratios(rows), load_after=os.getloadavg())
    if record["decode_over_generate"]:
        print("decode/generate (sequences/s): "
              + ", ".join(f"batch {bs}: {r:.2f}x" for bs, r in record["decode_over_generate"].items()))
    with open(args.out, "a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
