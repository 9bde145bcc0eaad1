"""A paper-scale estimate from the measured single-GPU figures: GSM8K's 7,473 seeds, an 8B model, on 1, 8 and 64 GPUs.

    python bench/paper_scale_estimate.py [--data ../shared/data/gsm8k] [--params 8e9] [--pool-per-seed 10]

Work per step (one round of one chain) at the paper's settings: train every example of the round for 3 epochs
(LoRA: ~4 N FLOPs per token, the frozen weights' gradients not computed), at each of the 3 epoch checkpoints the
target NLL of every seed and 10 samples of every seed (the selective rule sampling all of them: the worst case, and
what the SmolLM2 round measured), then the pool's NLL for the next round's signals, and the test set (1,319
questions x 4 samples). The rates are this project's, measured on one H200 with a 0.5B shape
(bench/results.json, bench/RESULTS.md): NLL at 23% of the 989 TFLOP/s bf16 peak, training at 7.0% MFU (32 x 1;
13.4% at 128 x 1), the decode loop at 4.7% (46.9k new tokens/s for 2 x 0.494 GFLOP each). A larger model's
larger matmuls usually run nearer the peak, so the figures are upper bounds for this code; vLLM's sampling rate
on the GPU was not measured here. Tokens per example come from the data (characters / 4). A cross-check against
the one measured paper round (SmolLM2-135M, 1,000 seeds: 149 s of sampling): the FLOP-fraction rate gives 13 s and
the step-latency model 44 s, 3-11x short, since a 135M model's decode steps are bound by per-step work that does
not shrink with the model. At 8B a step's FLOPs dominate it, so the gap should narrow, but sampling there is the
least certain line: measure one round before planning a budget on these figures.
Scaling: the chains of a comparison run side by side (scale.runs: deployments), one GPU each, so G GPUs take
ceil(chains / G) chain-lengths after round 0; one step is never spread over several GPUs (sharded scoring is not
built), so GPUs beyond the number of chains idle.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

PEAK = 989e12  # H200 dense bf16, datasheet
RATES = {"nll": 0.234, "train": 0.070, "train_large_batch": 0.134, "decode": 46.9e3 * 2 * 0.494e9 / 989e12}


def mean_tokens(data: Path | None, default: float = 250.0) -> float:
    path = data / "train.jsonl" if data else None
    if path is None or not path.exists():
        return default
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sum(len(r["question"]) + len(r["answer"]) for r in rows) / len(rows) / 4.0


def estimate(params: float, seeds: int, tokens: float, pool_per_seed: int, epochs: int = 3, samples: int = 10,
             test: int = 1319, test_samples: int = 4, new_tokens: float | None = None) -> dict:
    new_tokens = new_tokens or tokens * 0.6  # a solution is most of an example
    examples = seeds  # round 0; later rounds add budgets, the paper's at most doubling
    seconds = {
        "training (LoRA, 3 epochs)": 4 * params * examples * tokens * epochs / (RATES["train"] * PEAK),
        "dynamics NLL (every seed, every checkpoint)": 2 * params * seeds * tokens * epochs / (RATES["nll"] * PEAK),
        "dynamics sampling (10 per seed and checkpoint)":
            2 * params * seeds * samples * epochs * new_tokens / (RATES["decode"] * PEAK),
        "pool NLL (next round's signals)": 2 * params * seeds * pool_per_seed * tokens / (RATES["nll"] * PEAK),
        "test evaluation": 2 * params * test * test_samples * new_tokens / (RATES["decode"] * PEAK),
    }
    return seconds


def sampling_by_step_latency(params: float, seeds: int, tokens: float, epochs: int = 3, samples: int = 10,
                             rows: int = 512, new_tokens: float | None = None) -> float:
    """Dynamics sampling as decode steps of `rows` sequences: each step the per-step overhead measured at 0.5B
    (10.9 ms a step, less its own FLOPs at the NLL's rate: ~8.7 ms of logits work, launches and attention) plus
    the step's FLOPs at the NLL's 23% of peak. The alternative to the FLOP-fraction rate, which charges a large
    model the small one's overheads per FLOP."""
    new_tokens = new_tokens or tokens * 0.6
    overhead = 10.9e-3 - rows * 2 * 0.494e9 / (RATES["nll"] * PEAK)
    steps = math.ceil(seeds * samples / rows) * epochs * new_tokens
    return steps * (overhead + rows * 2 * params / (RATES["nll"] * PEAK))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/gsm8k")
    parser.add_argument("--params", type=float, default=8e9)
    parser.add_argument("--seeds", type=int, default=7473)
    parser.add_argument("--pool-per-seed", type=int, default=10)
    parser.add_argument("--strategies", type=int, default=4)
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tokens = mean_tokens(args.data)
    stages = estimate(args.params, args.seeds, tokens, args.pool_per_seed)
    step = sum(stages.values())
    chains = args.strategies * args.replicates
    steps = args.replicates + chains * args.rounds
    print(f"mean tokens per example: {tokens:.0f}; model {args.params / 1e9:g}B parameters; {args.seeds} seeds")
    for name, s in stages.items():
        print(f"  {name:<48} {s / 60:8.1f} GPU-min ({s / step:4.0%})")
    latency = sampling_by_step_latency(args.params, args.seeds, tokens)
    low = step - stages["dynamics sampling (10 per seed and checkpoint)"] + latency
    print(f"one step (a round of one chain): {step / 3600:.1f} GPU-hours; {low / 3600:.1f} with sampling by decode-step "
          f"latency ({latency / 60:.0f} GPU-min of sampling)")
    print(f"a comparison: {args.strategies} strategies x {args.replicates} replicates x {args.rounds} rounds + round 0 "
          f"= {steps} steps, {steps * low / 3600:.0f}-{steps * step / 3600:.0f} GPU-hours")
    for gpus in (1, 8, 64):
        waves_r0 = math.ceil(args.replicates / gpus)
        waves = math.ceil(chains / gpus) * args.rounds
        busy = min(gpus, chains)
        print(f"  {gpus:>2} GPUs: wall {(waves_r0 + waves) * low / 3600:5.1f}-{(waves_r0 + waves) * step / 3600:.1f} h "
              f"({waves_r0} + {waves} step-lengths; at most {busy} GPUs busy)")


if __name__ == "__main__":
    main()
