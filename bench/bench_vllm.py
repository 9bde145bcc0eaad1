"""Sampling side by side in one run, on the same prompts and lengths: the loop's vLLM backend, bare vLLM on the same
server, the decode loop and batched `generate`; plus vLLM's cost of new full weights (reload in place against a
restart) and its NLL against the loop's in-process scoring.

    python bench/bench_vllm.py --shape qwen2.5-0.5b --out DIR --vllm-python PY [--prompts 128] [--n 8] [--tokens 256]
                               [--engines loop,bare,decode,generate] [--generate-prompts 32] [--reload]

The model is a real shape with random weights (`bench.shapes`), written once as safetensors under DIR/model, with a
word-level tokenizer of the real vocabulary size. Random weights never emit the stop text, and every engine runs
each completion to exactly --tokens new tokens (vLLM: ignore_eos and min_tokens; the decode loop and generate stop
only at the stop text or EOS, which random weights reach with probability about 1/vocab per token), so each engine
does the same work: prompts x n x tokens. After one untimed full-size run (the server compiles kernels for the batch
shapes it first meets), loop and bare vLLM run --repeats times each, alternated, and report their median; the
in-process engines run once. `generate`, the
slowest, samples the first --generate-prompts prompts only (its rate is per token, so the ratio stands).

- loop: `VLLMSampler` on the loop's `VLLMServer` (per-question requests with their own seeds, token ids in,
  `vllm.concurrency` threads): what a curation run pays.
- bare: the same request bodies (`VLLMSampler.request`: token ids, n, seeds, lengths, the stop text) from a plain
  asyncio client at the same concurrency: what vLLM itself delivers; loop / bare is the loop's client overhead.
- decode / generate: the loop's in-process engines on the model in bf16 (the server is stopped first).
- reload (--reload): a second random checkpoint served by reloading it in place and by a restart (stop + start, with
  CUDA-graph capture), timed; NLL of 64 sequences through `prompt_logprobs` after each, against each other (a
  reload must serve what a start serves: it does not for a model with tied embeddings, whose LM head the reload
  leaves stale, `loop.model.vllm.backend.reloads_weights`) and against in-process bf16 scoring of the same ids.
Writes DIR/bench_vllm.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.shapes import SHAPES, VOCAB, random_text, word_tokenizer  # noqa: E402
from loop.config import SamplingConfig, VLLMConfig  # noqa: E402
from loop.model.formatting import encode_prompt  # noqa: E402
from loop.model.vllm.client import NLL_BATCH, VLLMSampler, VLLMScorer  # noqa: E402
from loop.model.vllm.server import VLLMServer  # noqa: E402

SEED = 0


def write_model(shape: str, path: Path, seed: int, tokenizer=None) -> None:
    """Random bf16 weights of `shape` (initialised on the GPU: an 8B model in seconds) and the tokenizer (default: the
    word-level one of the shape's vocabulary), as a Hugging Face folder vLLM and transformers both load."""
    from transformers import AutoModelForCausalLM

    config = SHAPES[shape](VOCAB[shape])
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(path)
    (tokenizer or word_tokenizer(VOCAB[shape])).save_pretrained(path)
    del model


def load_model(path: Path):
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa").to(device).eval()


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def bare_vllm(url: str, payloads: list[dict], concurrency: int) -> int:
    """The loop's request bodies sent from a plain asyncio client; returns the completion tokens the server reports."""
    import httpx

    async def run() -> int:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=httpx.Limits(
                max_connections=concurrency)) as client:
            async def one(payload: dict) -> int:
                async with gate:
                    response = await client.post(f"{url}/v1/completions", json=payload)
                response.raise_for_status()
                return response.json()["usage"]["completion_tokens"]

            return sum(await asyncio.gather(*(one(p) for p in payloads)))

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--vllm-python", default=os.environ.get("CURATION_LOOP_VLLM_PYTHON"))
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--prompt-words", type=int, default=100)
    ap.add_argument("--engines", default="loop,bare,decode,generate")
    ap.add_argument("--generate-prompts", type=int, default=32)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.6)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of loop and bare vLLM, alternated (median)")
    ap.add_argument("--reload", action="store_true")
    ap.add_argument("--extra-args", default="", help="more vLLM server flags, space separated")
    args = ap.parse_args()
    engines = args.engines.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = args.out / "model"
    if not (model_dir / "config.json").exists():
        _, seconds = timed(lambda: write_model(args.shape, model_dir, 0))
        print(f"wrote {args.shape} in {seconds:.1f}s", flush=True)
    tok = word_tokenizer(VOCAB[args.shape])
    rng = random.Random(SEED)
    questions = [random_text(rng, args.prompt_words, VOCAB[args.shape]) for _ in range(args.prompts)]
    sampling = SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=args.tokens, engine="vllm",
                              batch_size=args.prompts * args.n)
    work = args.prompts * args.n * args.tokens
    results: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                     "date": date.today().isoformat(), "shape": args.shape, "prompts": args.prompts, "n": args.n,
                     "new_tokens": args.tokens, "prompt_words": args.prompt_words, "engines": {}}

    if {"loop", "bare"} & set(engines) or args.reload:
        vcfg = VLLMConfig(python=args.vllm_python, gpu_memory_utilization=args.gpu_memory_utilization,
                          concurrency=args.concurrency, weight_update="reload",
                          extra_args=args.extra_args.split())
        server = VLLMServer(vcfg, args.out / "server", lora=False, max_model_len=args.prompt_words + args.tokens + 16,
                            device="cuda" if torch.cuda.is_available() else "cpu", reloads=True)
        try:
            server.start(str(model_dir), "model")
            results["vllm_start_s"] = server.seconds["start"][-1]
            sampler = VLLMSampler(server, "model", tok, sampling, vcfg)
            sampler.extra = {"ignore_eos": True, "min_tokens": args.tokens}
            # A full-size warm-up: the server compiles kernels for batch shapes it meets for the first time (a
            # Triton JIT during inference, in its log), which a small warm-up leaves to the first timed engine.
            sampler.sample(questions, args.n, seed=SEED)
            payloads = [sampler.request(i, encode_prompt(tok, q), args.n, SEED) for i, q in enumerate(questions)]
            times: dict[str, list[float]] = {"loop_vllm": [], "bare_vllm": []}
            for _ in range(args.repeats):  # alternated, so drift on the card falls on both alike
                if "loop" in engines:
                    times["loop_vllm"].append(timed(lambda: sampler.sample(questions, args.n, seed=SEED))[1])
                if "bare" in engines:
                    tokens, seconds = timed(lambda: bare_vllm(server.url, payloads, args.concurrency))
                    assert tokens == work, f"bare vLLM generated {tokens} tokens, expected {work}"
                    times["bare_vllm"].append(seconds)
            for engine, runs in times.items():
                if runs:
                    seconds = float(np.median(runs))
                    results["engines"][engine] = {"seconds": seconds, "tokens_per_s": work / seconds, "runs": runs}
            if args.reload:
                results["reload"] = measure_reload(args, server, vcfg, model_dir, tok)
        finally:
            server.stop()

    if {"decode", "generate"} & set(engines):
        from loop.model.precision import Precision
        from loop.model.sampling import DecodeLoopSampler, TransformersSampler

        model = load_model(model_dir)
        autocast = Precision(torch.bfloat16, None, "cuda" if torch.cuda.is_available() else "cpu").autocast
        if "decode" in engines:
            decode = DecodeLoopSampler(model, tok, sampling.model_copy(update={"engine": "decode"}), autocast=autocast())
            decode.sample(questions[:4], 2, seed=SEED)
            _, seconds = timed(lambda: decode.sample(questions, args.n, seed=SEED))
            results["engines"]["decode_loop"] = {"seconds": seconds, "tokens_per_s": work / seconds}
        if "generate" in engines:
            few = questions[: args.generate_prompts]
            generate = TransformersSampler(model, tok, sampling.model_copy(update={"engine": "generate"}),
                                           autocast=autocast())
            generate.sample(few[:2], 2, seed=SEED)
            _, seconds = timed(lambda: generate.sample(few, args.n, seed=SEED))
            results["engines"]["generate"] = {"seconds": seconds, "prompts": len(few),
                                              "tokens_per_s": len(few) * args.n * args.tokens / seconds}
        del model

    rate = {k: v["tokens_per_s"] for k, v in results["engines"].items()}
    ratios = {}
    if {"loop_vllm", "bare_vllm"} <= set(rate):
        ratios["vllm_vs_bare_vllm"] = rate["loop_vllm"] / rate["bare_vllm"]
    if {"loop_vllm", "decode_loop"} <= set(rate):
        ratios["vllm_sampling_speedup_vs_decode"] = rate["loop_vllm"] / rate["decode_loop"]
    if {"decode_loop", "generate"} <= set(rate):
        ratios["decode_speedup_vs_generate"] = rate["decode_loop"] / rate["generate"]
    results["ratios"] = ratios
    (args.out / "bench_vllm.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{args.shape}: {args.prompts} prompts x n {args.n} x {args.tokens} new tokens ({work:,} tokens)")
    for name, r in results["engines"].items():
        print(f"  {name:12s} {r['tokens_per_s']:>10,.0f} tokens/s  ({r['seconds']:.1f}s)")
    for name, value in ratios.items():
        print(f"  {name}: {value:.3f}")
    if "reload" in results:
        print("  new weights: " + ", ".join(f"{k} {v:.4g}" for k, v in results["reload"].items()))


def measure_reload(args, server: VLLMServer, vcfg: VLLMConfig, model_dir: Path, tok) -> dict:
    """A second checkpoint (other random weights) served by a reload in place, then by a restart on it; the NLL of
    64 random sequences through each, and in this process in bf16."""
    second = args.out / "model-2"
    if not (second / "config.json").exists():
        write_model(args.shape, second, 1)
    g = torch.Generator().manual_seed(2)
    length = min(200, server.max_model_len - 2)
    seqs = [torch.randint(2, VOCAB[args.shape], (length,), generator=g).tolist() for _ in range(64)]
    from loop.model.formatting import Encoded

    items = [Encoded(input_ids=s, n_prompt=length // 2) for s in seqs]
    scorer = VLLMScorer(server, "model", vcfg)
    _, reload_s = timed(lambda: server.reload(str(second)))
    assert server.reloads, "the server refused to reload weights in place"
    reloaded = scorer.mean_nll(items)
    started = time.perf_counter()
    server.stop()
    server.start(str(second), "model")
    restart_s = time.perf_counter() - started
    restarted = scorer.mean_nll(items)
    from loop.model.scoring import mean_nll

    model = load_model(second)
    local = mean_nll(model, seqs, [length // 2] * len(seqs), pad_id=0, batch_size=NLL_BATCH, batch_tokens=None)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"reload_s": reload_s, "restart_s": restart_s, "restart_over_reload": restart_s / reload_s,
            "nll_reload_vs_restart_max_abs": float(np.abs(reloaded - restarted).max()),
            "nll_vllm_vs_in_process_bf16_max_abs": float(np.abs(restarted - local).max()),
            "nll_mean": float(np.mean(local))}


if __name__ == "__main__":
    main()
