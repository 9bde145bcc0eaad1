"""One round at the paper's settings on a real model shape with random weights, measured by stage.

    python bench/paper_round.py --shape llama-3.1-8b --lora --data ../shared/data/gsm8k --out DIR
                                [--seeds 1000] [--run-seeds N] [--engine vllm|decode] [key=value ...]

The round is round 0 of a GSM8K comparison at the paper's settings (Kang et al.): `--seeds` seed examples trained
for 3 epochs (LoRA r 16 on every linear layer over a bf16 frozen base with --lora, else full fine-tuning), 10
samples of every seed at every epoch's checkpoint (tau -2.4 with random weights memorizes nothing, so the selective
rule samples them all: the worst case), the pool's NLL signals for the next round (about 6.3 pool items per seed,
as GSM8K train holds), and 300 test questions x 4 samples. Completions are capped at --tokens (256) new tokens.

The model (`bench.shapes`: Llama-3.1-8B's or Qwen2.5-1.5B's published shape) is written once under DIR/model as
bf16 safetensors, with a byte-level BPE trained on GSM8K train so questions and answers tokenize to about what a
real tokenizer gives, its vocabulary padded to the shape's. A round too long for one device call runs on
--run-seeds seeds (pool in proportion) and every per-seed stage (training, dynamics NLL, sampling and grading, pool
signals) is scaled by seeds / run-seeds: each is linear in the number of seeds. Evaluation runs the full 300 x 4
and is not scaled. Preparation (data, linking, the first model load, a vLLM server's start) is once per comparison,
reported apart.

Random weights never emit EOS, so every completion runs to --tokens: the sampling stages are an upper bound. The
estimate with real weights scales them by the mean length of GSM8K's reference solutions under the same tokenizer
over --tokens (decoding is paced by tokens generated; a model writing reference-length answers writes that many).

Writes DIR/paper_round.json (stages measured and scaled, peak GPU memory of this process and of the card, the
device and date) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.bench_vllm import write_model  # noqa: E402
from bench.shapes import SHAPES, VOCAB, bpe_tokenizer  # noqa: E402
from loop.config import build_config  # noqa: E402
from loop.run.engine import Engine  # noqa: E402
from loop.run.plan import plan_steps  # noqa: E402

POOL_PER_SEED = 6273 / 1000  # GSM8K train less 1,000 seeds and 200 dev, per seed
PER_SEED_STAGES = ("train", "dynamics_nll", "dynamics_sampling", "dynamics_grading", "signals")
SAMPLING_STAGES = ("dynamics_sampling", "eval")


class CardMemory:
    """The card's peak used memory (every process on it: the training process and a vLLM server), read from
    nvidia-smi once a second in a thread."""

    def __init__(self) -> None:
        self.peak_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=10).stdout.split()
                self.peak_mib = max(self.peak_mib, int(used[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            self._stop.wait(1.0)

    def __enter__(self) -> CardMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def reference_tokens(rows: list[dict], tok) -> float:
    """Mean tokens of the reference solutions of `rows` (GSM8K train) under `tok`."""
    return sum(len(tok(r["answer"])["input_ids"]) for r in rows) / len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--lora", action="store_true", help="LoRA r 16 on every linear layer (else full fine-tuning)")
    ap.add_argument("--data", type=Path, required=True, help="a GSM8K folder with train.jsonl and test.jsonl")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=1000, help="the round's seeds (the paper's 1,000)")
    ap.add_argument("--run-seeds", type=int, default=None, help="seeds actually run (default --seeds); scaled up")
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--engine", default="vllm", choices=["vllm", "decode"])
    ap.add_argument("overrides", nargs="*", help="more config overrides, key=value")
    args = ap.parse_args()
    run_seeds = args.run_seeds or args.seeds
    texts = [json.loads(line) for line in (args.data / "train.jsonl").read_text().splitlines() if line.strip()]
    tok = bpe_tokenizer([r["question"] + "\n" + r["answer"] for r in texts], VOCAB[args.shape])
    model_dir = args.out / "model"
    t0 = time.perf_counter()
    if not (model_dir / "config.json").is_file():
        write_model(args.shape, model_dir, seed=0, tokenizer=tok)
    write_s = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    lora = "{r: 16, alpha: 32}" if args.lora else "null"
    cfg = build_config("gsm8k", overrides=[
        f"out_dir={args.out / ('run-' + args.engine)}", "seeds=[0]", f"model.name_or_path={model_dir}",
        f"model.lora={lora}", f"data.path={args.data}", f"data.seed_limit={run_seeds}",
        f"data.pool_limit={round(POOL_PER_SEED * run_seeds)}", f"data.test_limit={args.test}", "data.dev_limit=200",
        f"sampling.max_new_tokens={args.tokens}", f"sampling.engine={args.engine}",
        "dynamics.n_samples=10", "dynamics.every_n_epochs=1", "dynamics.record=every_round", "evaluation.n_samples=4",
        "train.epochs=3", "selection.strategies=[random]",
        f"selection.budgets=[{max(1, run_seeds // 2)}, {max(1, run_seeds // 2)}]", *args.overrides])
    step = plan_steps(cfg)[0]
    assert step.round == 0, step
    engine = Engine(cfg)
    with CardMemory() as card:
        t0 = time.perf_counter()
        engine.prepare()
        prepare_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        info = engine.run_step(step)
        step_s = time.perf_counter() - t0
        frame = engine.store.step_frame(step.seed, step.strategy, step.round, "timings")
        engine.close()
    stages = dict(zip(frame["stage"].to_list(), frame["seconds"].to_list()))
    factor = args.seeds / run_seeds
    scaled = {s: x * (factor if s in PER_SEED_STAGES else 1.0) for s, x in stages.items()}
    ref = reference_tokens(texts, tok)
    real = {s: x * (min(ref, args.tokens) / args.tokens if s in SAMPLING_STAGES else 1.0) for s, x in scaled.items()}
    result = {
        "shape": args.shape, "lora": args.lora, "engine": cfg.sampling.engine, "seeds": args.seeds,
        "run_seeds": run_seeds, "scale": factor, "test": f"{args.test} x 4", "max_new_tokens": args.tokens,
        "write_model_s": round(write_s, 1), "prepare_s": round(prepare_s, 1), "step_wall_s": round(step_s, 1),
        "stages_measured_s": {s: round(x, 1) for s, x in stages.items()},
        "stages_scaled_s": {s: round(x, 1) for s, x in scaled.items()},
        "round_s": round(sum(scaled.values()), 1),
        "reference_solution_tokens": round(ref, 1),
        "round_real_weights_s": round(sum(real.values()), 1),
        "sequences_sampled": info["dynamics_sequences_sampled"], "n_examples": info["n_examples"],
        "peak_process_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if torch.cuda.is_available() else None,
        "peak_card_gib": round(card.peak_mib / 1024, 1) if card.peak_mib else None,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "date": str(date.today()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"paper_round-{args.engine}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
