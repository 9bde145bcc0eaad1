"""Where the host's time goes in one `mean_nll` call on a card (bench_gpu.py's nll section found the call's host time
above its kernel time): the top host ops by self time, and the call's wall time, on the nll section's fixed-length
sequences.

    python bench/nll_host_profile.py [--shape qwen2.5-0.5b] [--rows 256] [--sync]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench import bench_gpu  # noqa: E402
from bench.gpu_nll import nll_workload  # noqa: E402
from bench.shapes import VOCAB  # noqa: E402
from loop.model.precision import Precision  # noqa: E402
from loop.model.scoring import mean_nll  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="qwen2.5-0.5b")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--sync", action="store_true", help="the masked scorer (asynchronous off)")
    parser.add_argument("--mask-builder", action="store_true",
                        help="the asynchronous scorer with the model's mask builder (as until the evening of 2026-12-07)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run with --shape tiny")
    args = parser.parse_args()
    bench_gpu.DEVICE = args.device
    from torch.profiler import ProfilerActivity, profile

    seqs, starts = nll_workload(VOCAB[args.shape], "fixed")
    model = bench_gpu.build_model(args.shape)
    autocast = Precision(torch.float32, torch.bfloat16, args.device).autocast

    def run():
        mean_nll(model, seqs, starts, pad_id=0, batch_size=args.rows, autocast=autocast(),
                 head_kernel="trl", asynchronous=not args.sync, mask_builder=args.mask_builder)
        bench_gpu.synchronize()

    for _ in range(2):
        run()
    start = time.perf_counter()
    run()
    print(f"wall {1e3 * (time.perf_counter() - start):.1f} ms")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.key_averages()
    print(f"host ops {sum(e.count for e in events)}, self host ms {sum(e.self_cpu_time_total for e in events) / 1e3:.1f}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
