"""GPU throughput of the loop's stages on a real model shape with random weights, as ratios measured in one run.

    python bench/bench_gpu.py --out DIR [--shape qwen2.5-0.5b] [--sections peak,nll,sampling,training]

Sections (each timed after a warm-up, medians of repeats, on the same card in the same process):
- peak: the card's bf16 matmul rate (8192^3) and device-to-device copy bandwidth, the ceilings used below.
- nll: teacher-forced NLL of 256 sequences (100 prompt + 200 target tokens) by `loop.model.scoring.mean_nll`
  (float32 master weights under bf16 autocast, as the tracker scores a checkpoint in training; and bf16 weights,
  as a frozen base) against the paper's loop (float32 model, one example per forward, full logits).
- sampling: 64 prompts x n=8 x 256 new tokens at T 0.8, top-p 0.95 by the decode loop (CUDA graphs, and eager)
  against plain batched `generate` with num_return_sequences=8, bf16 weights; per-step cost against the
  weight-read roofline.
- training: `loop.model.training.train_round` on 4,096 random examples of 120-310 tokens, one epoch, at the
  gsm8k preset's batch settings and at a larger micro-batch; tokens/s and model FLOPs utilisation (6 N per token),
  and for a profiled run the MFU its kernels allow (`kernel_bound_mfu`: the same work over the kernels' time).
Writes DIR/bench_gpu.json (every figure) and prints a table; `--results` also writes the summary keys to a
results.json (device, date, nll_speedup_vs_per_example, nll_fraction_of_peak, train_mfu,
sampling_speedup_vs_batched_generate).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.gpu_levers import (  # noqa: E402
    DATASHEET_BF16, LEVER_RUNS, STEP_SPAN, StepClock, host_and_device, kernel_bound_mfu, lever_overrides, run_workers,
    train_mfu)
from bench.gpu_nll import (  # noqa: E402
    NLL_BEFORE, NLL_VARIANTS, PROFILED, default_nll_variant as nll_default, nll_matmul_flops, nll_workload)
from bench.shapes import SHAPES, VOCAB, random_text, word_tokenizer  # noqa: E402

RESULTS: dict = {}
N_TRAIN = 4096
DEVICE = "cuda"  # --device cpu with --shape tiny: a dry run of the script's logic on a machine without a GPU
TRAIN_RUNS = ["preset_32x1"]
PROFILE = True
PROFILED_RUNS = ("preset_32x1", "lean_32x1", "lean_liger_32x1", "lean_compile_32x1", "lean_async_32x1",
                 "lean_async_compile_32x1", "lean_async_compile_b32_32x1", "lean_async_graphs_32x1")


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def sync_time(fn, repeats: int = 3, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def section_peak() -> None:
    size = 8192 if DEVICE == "cuda" else 512
    a = torch.randn(size, size, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=DEVICE, dtype=torch.bfloat16)
    t = statistics.median(sync_time(lambda: [a @ b for _ in range(10)], repeats=3)) / 10
    src = torch.randn(1 << (30 if DEVICE == "cuda" else 22), device=DEVICE, dtype=torch.float32)  # 4 GiB
    dst = torch.empty_like(src)
    c = statistics.median(sync_time(lambda: dst.copy_(src), repeats=5))
    RESULTS["peak"] = {"bf16_matmul_tflops": 2 * size**3 / t / 1e12, "copy_bandwidth_gbs": 2 * src.numel() * 4 / c / 1e9}
    del a, b, src, dst


def build_model(shape: str, dtype=torch.float32):
    config = SHAPES[shape](VOCAB[shape])
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = __import__("transformers").AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def section_nll(shape: str, variants: list[str] | None = None) -> None:
    """The paper's per-example loop, then each of `NLL_VARIANTS` (bench/gpu_nll.py): median seconds of 3 calls after
    a warm-up (whose own seconds are kept: a compiled variant compiles there), and for `PROFILED` a profile of one
    call (host time, waits on the card, kernel time by kind; "step" there means the call)."""
    from loop.model.precision import Precision
    from loop.model.scoring import mean_nll

    workloads = {lengths: nll_workload(VOCAB[shape], lengths) for lengths in ("fixed", "mixed", "pool")}
    seqs, starts = workloads["fixed"]
    model = build_model(shape)

    @torch.no_grad()
    def paper_loop(n: int) -> None:  # one example per forward, float32, full logits (the authors' script)
        for s, st in zip(seqs[:n], starts[:n]):
            ids = torch.tensor([s], device=DEVICE)
            logits = model(input_ids=ids).logits
            F.cross_entropy(logits[0, st - 1 : -1], ids[0, st:]).item()

    torch.backends.cuda.matmul.allow_tf32 = False  # the paper's float32 loop, as its code ran it
    n_paper = 64
    paper = statistics.median(sync_time(lambda: paper_loop(n_paper), repeats=2))
    paper_rate = n_paper * 200 / paper
    torch.backends.cuda.matmul.allow_tf32 = True
    autocast = Precision(torch.float32, torch.bfloat16, DEVICE).autocast
    out = {"paper_target_tokens_per_s": paper_rate}
    for label, v in NLL_VARIANTS.items():
        if variants and label not in variants:
            continue
        if v.weights == "bf16" and next(model.parameters()).dtype != torch.bfloat16:
            del model
            model = build_model(shape, dtype=torch.bfloat16)
        m = model
        sequences, score_from = workloads[v.lengths]
        target_tokens = sum(len(s) - st for s, st in zip(sequences, score_from))
        all_tokens = sum(len(s) for s in sequences)
        run = lambda: mean_nll(m, sequences, score_from, pad_id=0, batch_size=v.rows,  # noqa: E731
                               batch_tokens=None, autocast=autocast(), head_kernel=v.head,
                               asynchronous=v.asynchronous, mask_builder=v.mask_builder,
                               cuda_graphs=v.cuda_graphs, compile_layers=v.compiled)
        try:
            first = sync_time(run, repeats=1, warmup=0)[0]
            t = statistics.median(sync_time(run, repeats=3, warmup=0))
        except Exception:  # noqa: BLE001 - a variant that fails here is a result
            out[label] = {"error": traceback.format_exc()[-1500:]}
            continue
        flops = nll_matmul_flops(m, all_tokens, target_tokens) / t
        out[label] = {"seconds": t, "first_call_seconds": first, "target_tokens_per_s": target_tokens / t,
                      "speedup_vs_paper": target_tokens / t / paper_rate, "model_tflops": flops / 1e12,
                      "fraction_of_datasheet_peak": flops / DATASHEET_BF16,
                      "fraction_of_measured_peak": flops / (RESULTS.get("peak", {}).get("bf16_matmul_tflops", 989) * 1e12)}
        if label in PROFILED and DEVICE == "cuda" and PROFILE:
            out[label]["profile_per_call"] = profile_call(run)
        print(f"  nll {label}: {out[label]['fraction_of_datasheet_peak']:.3f} of peak, {t * 1e3:.0f} ms", flush=True)
    RESULTS["nll"] = out
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def profile_call(run) -> dict:
    """One call under torch.profiler: host time, waits on the card and kernel time by kind (gpu_levers)."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with record_function(STEP_SPAN):
            run()
        synchronize()
    return host_and_device(prof, 1)


def section_sampling(shape: str) -> None:
    from loop.config import SamplingConfig
    from loop.model.precision import Precision
    from loop.model.sampling import DecodeLoopSampler

    model = build_model(shape, torch.bfloat16)
    vocab = VOCAB[shape]
    tok = word_tokenizer(vocab)
    rng = random.Random(2)
    questions = [random_text(rng, 100, vocab) for _ in range(64)]
    n, new = 8, 256
    cfg = SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=new, batch_size=512)
    prompts = tok(questions, return_tensors="pt", padding=True, padding_side="left")
    tokens_out = len(questions) * n * new

    def generate() -> None:
        torch.manual_seed(0)
        model.generate(input_ids=prompts["input_ids"].to(DEVICE), attention_mask=prompts["attention_mask"].to(DEVICE),
                       do_sample=True, temperature=0.8, top_p=0.95, top_k=None, max_new_tokens=new,
                       min_new_tokens=new, num_return_sequences=n, pad_token_id=0, eos_token_id=None)

    gen = statistics.median(sync_time(generate, repeats=1, warmup=1))
    out = {"generate_seconds": gen, "generate_tokens_per_s": tokens_out / gen}
    autocast = Precision(torch.bfloat16, torch.bfloat16, DEVICE).autocast
    from loop.model.sampling import draws

    default = draws.NUCLEUS
    for label, graphs, nucleus in (("decode_loop_graphs", True, default), ("decode_loop_graphs_sorted_nucleus", True, "sort"),
                                   ("decode_loop_eager", False, default)):
        draws.NUCLEUS = nucleus
        sampler = DecodeLoopSampler(model, tok, cfg, autocast=autocast(), cuda_graphs=graphs)
        times = sync_time(lambda: sampler.sample(questions, n, seed=0), repeats=2 if graphs else 1)
        t = statistics.median(times)
        completions = sampler.sample(questions[:2], n, seed=0)
        draws.NUCLEUS = default
        out[label] = {"seconds": t, "tokens_per_s": tokens_out / t, "speedup_vs_generate": gen / t, "nucleus": nucleus,
                      "graph_steps": sampler.graphs_used, "ms_per_step": 1e3 * t / (new + 1),
                      "completion_words": [len(c.split()) for c in completions[0]]}
    weight_bytes = n_params(model) * 2
    bw = RESULTS.get("peak", {}).get("copy_bandwidth_gbs", 4300) * 1e9
    kv_per_token = 2 * model.config.num_hidden_layers * model.config.num_key_value_heads * \
        (model.config.hidden_size // model.config.num_attention_heads) * 2
    capacity = prompts["input_ids"].shape[1] + new
    out["roofline_ms_per_step_weights"] = 1e3 * weight_bytes / bw
    out["roofline_ms_per_step_weights_and_kv"] = 1e3 * (weight_bytes + 512 * capacity * kv_per_token) / bw
    RESULTS["sampling"] = out
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def section_training(shape: str) -> None:
    import polars as pl

    from loop.config import build_config
    from loop.model.training import train_round

    vocab = VOCAB[shape]
    tok = word_tokenizer(vocab)
    rng = random.Random(3)
    rows = []
    for i in range(N_TRAIN):
        total = rng.randint(120, 310)
        q = rng.randint(40, 80)
        rows.append({"id": str(i), "question": random_text(rng, q, vocab), "solution": random_text(rng, total - q - 3, vocab)})
    examples = pl.DataFrame(rows)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(shape)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        params = n_params(model)
        del model
        torch.cuda.empty_cache()
        out = {}
        from trl import SFTTrainer

        original, trained = SFTTrainer.train, []
        clock: list[StepClock] = []

        def timed(self, *a, **kw):  # the optimisation alone, apart from loading, tokenising and the trainer's set-up
            clock.append(StepClock(profile=PROFILE and label in PROFILED_RUNS))
            self.add_callback(clock[-1])
            synchronize()
            start, wall = time.perf_counter(), time.time()
            result = original(self, *a, **kw)
            synchronize()
            trained.append((time.perf_counter() - start, wall, time.time()))
            return result

        SFTTrainer.train = timed
        tokens = sum(len(tok(f"{q}\nAnswer: {s}\nDone.")["input_ids"]) for q, s in
                     zip(examples["question"], examples["solution"]))
        for n, label in enumerate(TRAIN_RUNS):
            batch, levers = LEVER_RUNS[label]
            # A run named twice (compile-reuse: the second compiled call in the same process) keeps both records.
            key = label if label not in TRAIN_RUNS[:n] else f"{label}#{TRAIN_RUNS[:n + 1].count(label)}"
            cfg = build_config("gsm8k", overrides=[f"model.name_or_path={tmp}", "train.epochs=1",
                                                   f"train.batch_size={batch}",
                                                   "train.max_length=1024", *levers])
            if DEVICE == "cuda":
                torch.cuda.reset_peak_memory_stats()
            try:
                model, seconds = train_round(cfg, tok, examples, seed=0, device=torch.device(DEVICE))
            except Exception:  # noqa: BLE001 - a lever that fails on this device is a result, not the end of the run
                out[key] = {"error": traceback.format_exc()[-2000:]}
                traceback.print_exc()
                continue
            dtypes = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})
            rate = tokens / seconds
            call, start, end = trained[-1]
            fit = tokens / call
            steady = clock[-1].steady_seconds_per_step()
            per_step = batch * cfg.train.gradient_accumulation_steps  # examples per optimizer step
            steady_rate = tokens * per_step / N_TRAIN / steady if steady else None
            out[key] = {"seconds": seconds, "tokens_per_s": rate, "mfu_datasheet": train_mfu(params, rate),
                          "train_call_seconds": call, "train_call_tokens_per_s": fit,
                          "train_call_mfu_datasheet": train_mfu(params, fit),
                          "steady_ms_per_step": 1e3 * steady if steady else None,
                          "steady_tokens_per_s": steady_rate,
                          "steady_mfu_datasheet": train_mfu(params, steady_rate) if steady_rate else None,
                          "profile": clock[-1].profiled, "levers": levers, "tokens": tokens, "params": params,
                          "kernel_bound_mfu_datasheet": kernel_bound_mfu(
                              params, tokens * per_step / N_TRAIN, clock[-1].profiled["device_ms_per_step"])
                          if clock[-1].profiled.get("device_ms_per_step") else None,
                          "train_call_start_unix": start, "train_call_end_unix": end,
                          "trained_weight_dtypes": dtypes,
                          "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if DEVICE == "cuda" else None}
            print(f"[training] {key}: {fit:,.0f} tokens/s in the train call, steady "
                  f"{steady_rate or 0:,.0f} tokens/s, MFU {out[key]['steady_mfu_datasheet'] or 0:.1%}", flush=True)
            del model
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
        SFTTrainer.train = original
    RESULTS["training"] = out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    parser.add_argument("--sections", default="peak,nll,sampling,training")
    parser.add_argument("--results", default=None, help="write the summary keys to this results.json")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run with --shape tiny")
    parser.add_argument("--examples", type=int, default=4096, help="training examples")
    parser.add_argument("--train-runs", default=",".join(LEVER_RUNS),
                        help=f"training configurations to time, in order (of {', '.join(LEVER_RUNS)})")
    parser.add_argument("--no-profile", action="store_true", help="no torch.profiler over a few training steps")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts sharing the card (workers section)")
    parser.add_argument("--worker-run", default="lean_32x1", help="the training run each worker times")
    parser.add_argument("--worker-examples", type=int, default=1024)
    parser.add_argument("--nll-variants", default=None,
                        help=f"NLL variants to time, of {', '.join(NLL_VARIANTS)} (default: all)")
    args = parser.parse_args()
    global DEVICE, N_TRAIN, TRAIN_RUNS, PROFILE
    DEVICE, N_TRAIN, TRAIN_RUNS = args.device, args.examples, args.train_runs.split(",")
    PROFILE = not args.no_profile
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    RESULTS["device"] = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    RESULTS["date"] = date.today().isoformat()
    RESULTS["shape"] = args.shape
    RESULTS["versions"] = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    for name in args.sections.split(","):
        started = time.perf_counter()
        try:
            {"peak": section_peak,
             "nll": lambda: section_nll(args.shape, args.nll_variants and args.nll_variants.split(",")),
             "sampling": lambda: section_sampling(args.shape),
             "training": lambda: section_training(args.shape),
             "workers": lambda: RESULTS.__setitem__("workers", run_workers(
                 Path(__file__), out, [int(n) for n in args.workers.split(",")], args.worker_run,
                 args.worker_examples, args.shape, DEVICE))}[name]()
        except Exception:  # noqa: BLE001 - one section's failure must not lose the others' figures
            RESULTS.setdefault("errors", {})[name] = traceback.format_exc()
            traceback.print_exc()
        RESULTS.setdefault("section_seconds", {})[name] = time.perf_counter() - started
        (out / "bench_gpu.json").write_text(json.dumps(RESULTS, indent=2))
        print(f"[{name}] {time.perf_counter() - started:.1f}s", flush=True)
    summary = summarize(RESULTS)
    print(json.dumps(summary, indent=2))
    if args.results:
        Path(args.results).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def summarize(r: dict) -> dict:
    nll = r.get("nll", {}).get(default_nll_variant(), {})
    nll_before = r.get("nll", {}).get(NLL_BEFORE, {})
    samp = r.get("sampling", {}).get("decode_loop_graphs", {})
    nll_heads = {k: v for k, v in r.get("nll", {}).items() if isinstance(v, dict) and "fraction_of_datasheet_peak" in v}
    best_nll = max(nll_heads, key=lambda k: nll_heads[k]["fraction_of_datasheet_peak"], default=None)
    # Training: the step as it ran before the levers, the step the device's defaults now take, and the best run.
    runs = {k: v for k, v in r.get("training", {}).items() if v.get("steady_mfu_datasheet")}
    default = default_run_label()
    best = max(runs, key=lambda k: runs[k]["steady_mfu_datasheet"], default=None)
    workers = {k: v for k, v in r.get("workers", {}).items() if "mfu_datasheet" in v}
    return {"device": r["device"], "date": r["date"], "shape": r["shape"],
            "nll_speedup_vs_per_example": nll.get("speedup_vs_paper"),
            "nll_fraction_of_peak": nll.get("fraction_of_datasheet_peak"),
            "nll_fraction_of_peak_before": nll_before.get("fraction_of_datasheet_peak"),
            "nll_fraction_of_peak_best": nll_heads.get(best_nll, {}).get("fraction_of_datasheet_peak"),
            "nll_best_variant": best_nll,
            "train_mfu_before": runs.get("preset_32x1", {}).get("steady_mfu_datasheet"),
            "train_mfu": runs.get(default, {}).get("steady_mfu_datasheet"), "train_mfu_run": default,
            "train_mfu_best": runs.get(best, {}).get("steady_mfu_datasheet"), "train_mfu_best_run": best,
            "train_step_speedup_best": (runs[best]["steady_tokens_per_s"] / runs["preset_32x1"]["steady_tokens_per_s"]
                                        if best and "preset_32x1" in runs else None),
            "train_mfu_aggregate": {k: v["mfu_datasheet"] for k, v in workers.items()},
            "sampling_speedup_vs_batched_generate": samp.get("speedup_vs_generate")}


def default_nll_variant() -> str | None:
    """The NLL variant the loop runs on a GPU (bench/gpu_nll.py): `head_kernel: auto`'s head on a card, the asynchronous
    scorer, and the rows per batch of `dynamics.nll_batch_size`'s default."""
    from loop.config import DynamicsConfig
    from loop.model.scoring import resolve_asynchronous, resolve_head_kernel

    cuda, dynamics = torch.device("cuda"), DynamicsConfig()
    return nll_default(resolve_head_kernel("auto", cuda), dynamics.nll_batch_size,
                       resolve_asynchronous(dynamics.nll_async, cuda))


def default_run_label() -> str | None:
    """The lever run whose settings the gsm8k preset's `auto` resolves to on a GPU without trackers."""
    from loop.config import build_config
    from loop.model.training_levers import resolve_levers

    levers = resolve_levers(build_config("gsm8k").train, torch.device("cuda"), trackers_on=False, checkpointing=False)
    wanted = lever_overrides(levers.token_metrics, levers.kernels, levers.compile, levers.async_step)
    return next((k for k, (batch, o) in LEVER_RUNS.items() if batch == 32 and o == wanted), None)


if __name__ == "__main__":
    sys.exit(main())
