"""A paper-scale estimate from a measured round: GSM8K's 7,473 seeds, an 8B model with LoRA, on 1, 8 and 64 GPUs.

Another measured round gives the estimate for its model (`--round bench/gpu/2026-12-07-h100-paper-round-1.5b-full.json`:
Qwen2.5-1.5B, full fine-tuning).

    python bench/paper_scale_estimate.py [--round bench/gpu/2026-12-06-h100-paper-round-8b-lora.json]
                                         [--seeds 7473] [--pool-per-seed 10] [--strategies 4] [--replicates 3]

The rates are those of one measured round (`bench/paper_round.py`: a Llama-3.1-8B shape with random weights, LoRA r 16
on every linear layer over a bf16 base, vLLM sampling, GSM8K at the paper's settings; the JSON it wrote), per unit
of work: an example-epoch of training, a teacher-forced NLL of a seed at a checkpoint, a sampled sequence of the
dynamics, a test sequence. A step (one round of one chain) at `--seeds` seeds does 3 epochs of every seed, the NLL and
10 samples of every seed at each of the 3 checkpoints (the selective rule sampling all: the worst case), the pool's
NLL for the next round's signals (`--pool-per-seed` items a seed, charged at the dynamics NLL's rate per sequence:
the same teacher-forced pass over examples of the same lengths; the measured round's strategy needed no pool
signals) and the test set (1,319 questions x 4 samples). Each stage is linear in its units. Later rounds add the
strategies' budgets to the examples trained (the paper's at most double them); the estimate charges every step as
round 0, a lower bound on them.

Two sampling figures bound it: random weights never stop, so every completion ran to the round's max_new_tokens
(the upper end); with real weights a completion stops near the length of a reference solution (the lower end
scales the sampling stages by the reference length over max_new_tokens, both from the measured round).
Scaling: the chains of a comparison run side by side (scale.runs: deployments), one GPU each, so G GPUs take
ceil(chains / G) chain-lengths after round 0; one step is never spread over several GPUs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROUND = Path(__file__).resolve().parent / "gpu" / "2026-12-06-h100-paper-round-8b-lora.json"
SAMPLES, EPOCHS, TEST, TEST_SAMPLES = 10, 3, 1319, 4


def unit_rates(measured: dict) -> dict[str, float]:
    """Seconds per unit of work in the measured round (its stages scaled to its full seed count)."""
    stages, seeds = measured["stages_scaled_s"], measured["seeds"]
    questions = int(measured["test"].split(" x ")[0])
    return {"train": stages["train"] / (seeds * EPOCHS), "nll": stages["dynamics_nll"] / (seeds * EPOCHS),
            "sample": stages["dynamics_sampling"] / (seeds * EPOCHS * SAMPLES),
            "test": stages["eval"] / (questions * TEST_SAMPLES)}


def step_seconds(rates: dict[str, float], seeds: int, pool_per_seed: int, length_share: float = 1.0, *,
                 lora: bool = True) -> dict:
    """One step's stages in seconds; `length_share` scales the sampling stages (completion length over the cap);
    `lora` names the measured round's training (LoRA or full fine-tuning)."""
    return {
        f"training ({'LoRA' if lora else 'full'}, 3 epochs)": rates["train"] * seeds * EPOCHS,
        "dynamics NLL (every seed, every checkpoint)": rates["nll"] * seeds * EPOCHS,
        "dynamics sampling (10 per seed and checkpoint)": rates["sample"] * seeds * EPOCHS * SAMPLES * length_share,
        "pool NLL (next round's signals)": rates["nll"] * seeds * pool_per_seed,
        "test evaluation": rates["test"] * TEST * TEST_SAMPLES * length_share,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round", type=Path, default=ROUND, help="bench/paper_round.py's JSON")
    parser.add_argument("--seeds", type=int, default=7473)
    parser.add_argument("--pool-per-seed", type=int, default=10)
    parser.add_argument("--strategies", type=int, default=4)
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    measured = json.loads(args.round.read_text())
    rates = unit_rates(measured)
    share = min(1.0, measured["reference_solution_tokens"] / measured["max_new_tokens"])
    high = step_seconds(rates, args.seeds, args.pool_per_seed, lora=measured["lora"])
    low = step_seconds(rates, args.seeds, args.pool_per_seed, share, lora=measured["lora"])
    step_high, step_low = sum(high.values()), sum(low.values())
    chains = args.strategies * args.replicates
    steps = args.replicates + chains * args.rounds
    print(f"rates from {args.round.name}: {measured['shape']}, {measured['device']}, {measured['date']} "
          f"({measured['run_seeds']} seeds run, scaled to {measured['seeds']}); {args.seeds} seeds a step")
    for name in high:
        print(f"  {name:<48} {low[name] / 60:7.1f}-{high[name] / 60:.1f} GPU-min")
    print(f"one step (a round of one chain): {step_low / 3600:.1f}-{step_high / 3600:.1f} GPU-hours (sampling at "
          f"reference-solution length, {measured['reference_solution_tokens']:.0f} tokens, to every completion at "
          f"{measured['max_new_tokens']})")
    print(f"a comparison: {args.strategies} strategies x {args.replicates} replicates x {args.rounds} rounds + round 0 "
          f"= {steps} steps, {steps * step_low / 3600:.0f}-{steps * step_high / 3600:.0f} GPU-hours")
    for gpus in (1, 8, 64):
        waves = math.ceil(args.replicates / gpus) + math.ceil(chains / gpus) * args.rounds
        print(f"  {gpus:>2} GPUs: wall {waves * step_low / 3600:5.1f}-{waves * step_high / 3600:.1f} h "
              f"({waves} step-lengths; at most {min(gpus, chains)} GPUs busy)")


if __name__ == "__main__":
    main()
