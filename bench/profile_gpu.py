"""Where the GPU time of a decode step and of a training step goes (torch.profiler tables), for tuning.

    python bench/profile_gpu.py --out DIR [--shape qwen2.5-0.5b]

Prints the operators with the most device time of (1) 32 eager decode steps of the decode loop at 512 rows,
(2) the token pick alone (sort-based nucleus) on [512, vocab] logits, and (3) a few SFTTrainer steps, and the
wall time of `trainer.train()` apart from the rest of a round.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench.bench_gpu import build_model  # noqa: E402
from bench.shapes import VOCAB, random_text, word_tokenizer  # noqa: E402


def table(prof, n=18) -> str:
    return prof.key_averages().table(sort_by="device_time_total", row_limit=n, max_name_column_width=60)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--shape", default="qwen2.5-0.5b")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    from loop.config import SamplingConfig
    from loop.model.sampling import DecodeLoopSampler
    from loop.model.sampling.draws import pick, seed_key, uniforms

    vocab = VOCAB[args.shape]
    model = build_model(args.shape, torch.bfloat16)
    tok = word_tokenizer(vocab)
    rng = random.Random(2)
    questions = [random_text(rng, 100, vocab) for _ in range(64)]
    cfg = SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=32, batch_size=512)
    sampler = DecodeLoopSampler(model, tok, cfg, cuda_graphs=False)
    sampler.sample(questions, 8, seed=0)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        sampler.sample(questions, 8, seed=0)
        torch.cuda.synchronize()
    report.append("== decode loop, eager, 512 rows x 32 steps\n" + table(prof))
    graphed = DecodeLoopSampler(model, tok, cfg, cuda_graphs=True)
    graphed.sample(questions, 8, seed=0)
    torch.cuda.synchronize()
    start = time.perf_counter()
    graphed.sample(questions, 8, seed=0)
    torch.cuda.synchronize()
    report.append(f"== decode loop, graphs, 512 rows x 32 steps: {time.perf_counter() - start:.3f}s, "
                  f"{graphed.graphs_used} graph steps")

    logits = torch.randn(512, vocab, device="cuda") * 0.6
    u = uniforms(seed_key(0), torch.arange(512, device="cuda"), torch.zeros(512, dtype=torch.long, device="cuda"))
    for _ in range(3):
        pick(logits, u, 0.8, 0.95)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        pick(logits, u, 0.8, 0.95)
    torch.cuda.synchronize()
    report.append(f"== pick [512, {vocab}]: {1e3 * (time.perf_counter() - start) / 20:.2f} ms per call")
    for name, fn in (("sort", lambda: torch.sort(logits, dim=-1)), ("softmax", lambda: logits.softmax(-1)),
                     ("cumsum", lambda: logits.cumsum(-1)), ("topk1024", lambda: torch.topk(logits, 1024, dim=-1))):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        report.append(f"   {name}: {1e3 * (time.perf_counter() - start) / 20:.2f} ms")
    del model, sampler
    torch.cuda.empty_cache()

    import tempfile

    import polars as pl
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from loop.config import build_config
    from loop.model import training

    rows = []
    for i in range(512):
        total = rng.randint(120, 310)
        q = rng.randint(40, 80)
        rows.append({"id": str(i), "question": random_text(rng, q, vocab), "solution": random_text(rng, total - q - 3, vocab)})
    examples = pl.DataFrame(rows)
    prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                   schedule=torch.profiler.schedule(wait=2, warmup=2, active=4, repeat=1))

    class Step(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            prof.step()

    original_init = SFTTrainer.__init__

    def init_with_profiler(self, *a, **kw):
        kw["callbacks"] = [*(kw.get("callbacks") or []), Step()]
        original_init(self, *a, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        m = build_model(args.shape)
        m.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        del m
        cfg = build_config("gsm8k", overrides=[f"model.name_or_path={tmp}", "train.epochs=1", "train.batch_size=32",
                                               "train.gradient_accumulation_steps=1"])
        SFTTrainer.__init__ = init_with_profiler
        try:
            with prof:
                start = time.perf_counter()
                training.train_round(cfg, tok, examples.head(32 * 8), seed=0, device=torch.device("cuda"))
                whole = time.perf_counter() - start
        finally:
            SFTTrainer.__init__ = original_init
    report.append(f"== training, 8 steps of 32 examples (4 profiled): round {whole:.1f}s")
    report.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=60))
    report.append(table(prof, 14))
    text = "\n\n".join(report)
    (out / "profile.txt").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
