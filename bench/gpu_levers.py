"""The training-step levers of issue 22 as bench_gpu.py measures them: which runs, a per-step clock, a profile
of a few steps (host time against device time), and several training workers sharing one card.

Each run is one `train_round` of the same examples at the presets' 32 examples per optimizer step, differing only
in `train.token_metrics`, `train.kernels`, `train.compile`, `train.async_step`, `train.cuda_graphs` and
`train.length_bucket` (loop.model.training_levers).
The step clock reads the wall time at each optimizer step's end without synchronising (a sync would itself change
what is measured), so the steady rate is taken over the steps after the first WARM_STEPS (compilation and
allocator warm-up)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

DATASHEET_BF16 = 989e12  # H100/H200 SXM dense bf16, the vendor's figure
WARM_STEPS = 8
PROFILE_STEPS = (12, 16)  # profiled optimizer steps [start, end)
STEP_SPAN = "curation.train_step"

def lever_overrides(token_metrics: bool, kernels: str = "torch", compile_: bool = False,
                    async_step: bool = False, cuda_graphs: bool = False, bucket: int | None = None) -> list[str]:
    """The config overrides that pin every lever of `train_round` (loop.model.training_levers), in one order.
    `bucket`: train.length_bucket (unset: batches padded to their longest row, or to 32 under CUDA graphs)."""
    return [f"train.token_metrics={str(token_metrics).lower()}", f"train.kernels={kernels}",
            f"train.compile={str(compile_).lower()}", f"train.async_step={str(async_step).lower()}",
            f"train.cuda_graphs={str(cuda_graphs).lower()}", f"train.length_bucket={bucket or 'null'}"]


# label -> (micro-batch, overrides); the first is the step as it ran before the levers.
LEVER_RUNS = {
    "preset_32x1": (32, lever_overrides(True)),
    "lean_32x1": (32, lever_overrides(False)),
    "lean_liger_32x1": (32, lever_overrides(False, kernels="liger")),
    "lean_compile_32x1": (32, lever_overrides(False, compile_=True)),
    "lean_async_32x1": (32, lever_overrides(False, async_step=True)),
    "lean_async_compile_32x1": (32, lever_overrides(False, compile_=True, async_step=True)),
    # Compiled layers on batches padded to 32 tokens (what the padding costs alone), then replayed as CUDA graphs.
    "lean_async_compile_b32_32x1": (32, lever_overrides(False, compile_=True, async_step=True, bucket=32)),
    "lean_async_graphs_32x1": (32, lever_overrides(False, compile_=True, async_step=True, cuda_graphs=True)),
    # The same optimizer step in two micro-batches: about half the activation memory, so that 8 workers fit one card.
    "lean_16x2": (16, [*lever_overrides(False), "train.gradient_accumulation_steps=2"]),
    "lean_async_16x2": (16, [*lever_overrides(False, async_step=True), "train.gradient_accumulation_steps=2"]),
    "micro_batch_64x1": (64, lever_overrides(True)),
    "micro_batch_128x1": (128, lever_overrides(True)),
}


class StepClock(TrainerCallback):
    """Wall time at every optimizer step's end, and a torch.profiler over PROFILE_STEPS when asked."""

    def __init__(self, profile: bool):
        self.ends: list[float] = []
        self.start = time.perf_counter()
        self.profile = profile
        self.prof = None
        self.profiled: dict = {}

    def on_step_begin(self, args, state, control, **kwargs):
        if self.profile and state.global_step == PROFILE_STEPS[0]:
            import torch
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.prof = profile(activities=activities)
            self.prof.__enter__()
        if self.prof is not None:
            from torch.autograd.profiler import record_function

            self.span = record_function(STEP_SPAN)
            self.span.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())
        if self.prof is not None:
            self.span.__exit__(None, None, None)
            if state.global_step >= PROFILE_STEPS[1]:
                self.prof.__exit__(None, None, None)
                self.profiled = host_and_device(self.prof, PROFILE_STEPS[1] - PROFILE_STEPS[0])
                self.prof = None

    def steady_seconds_per_step(self) -> float | None:
        gaps = [b - a for a, b in zip(self.ends[WARM_STEPS:], self.ends[WARM_STEPS + 1 :])]
        skip = set(range(PROFILE_STEPS[0] - WARM_STEPS - 1, PROFILE_STEPS[1] - WARM_STEPS + 1)) if self.profile else set()
        gaps = [g for i, g in enumerate(gaps) if i not in skip]
        return statistics.median(gaps) if gaps else None


SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def host_and_device(prof, steps: int) -> dict:
    """Per step: host time (the span from a step's start to its end on the host, waits included), the host's
    waits on the card (synchronize calls; copies are counted apart, since most are asynchronous uploads), kernel
    time (the device's own kernels, each counted once) and the top kernels.

    The card's timeline also carries every record_function range as an annotation (this clock's own step span,
    the optimizer's `Optimizer.step#...`), whose duration is not kernel time: those are left out."""
    from torch.autograd import DeviceType

    events = prof.key_averages()
    host = sum(e.cpu_time_total for e in events if e.key == STEP_SPAN) / steps / 1e3
    kernels = [e for e in events if e.device_type == DeviceType.CUDA and not is_annotation(e)]
    device = sum(e.self_device_time_total for e in kernels) / steps / 1e3
    syncs = [e for e in events if e.key in SYNC_CALLS]
    copies = [e for e in events if e.key == "cudaMemcpyAsync"]
    top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:12]
    return {"host_ms_per_step": host, "device_ms_per_step": device,
            "sync_calls_per_step": sum(e.count for e in syncs) / steps,
            "sync_wait_ms_per_step": sum(e.cpu_time_total for e in syncs) / steps / 1e3,
            "copy_calls_per_step": sum(e.count for e in copies) / steps,
            "top_kernels_ms_per_step": {e.key[:70]: e.self_device_time_total / steps / 1e3 for e in top},
            "kernel_ms_per_step_by_kind": kernel_kinds(kernels, steps)}


# What a kernel's name says it does, first match wins (cuBLAS/cuDNN/Triton/ATen names on H100 and H200).
KERNEL_KINDS = (
    ("attention", ("sdpa", "flash", "fmha", "attention")),
    ("matmul", ("nvjet", "gemm", "cutlass", "sm90_xmma", "ampere_", "cublas", "splitk")),
    ("optimizer", ("multi_tensor_apply", "adam", "fused_adam")),
    ("fused_triton", ("triton_",)),  # Inductor's fused kernels, whatever ops they fuse
    ("lm_head_and_loss", ("log_softmax", "logsumexp", "cross_entropy", "nll_loss", "_chunked")),
    ("copy_and_cast", ("copy", "cast", "memcpy", "memset", "fill")),
    ("reduction", ("reduce", "sum", "norm", "mean", "max")),
    ("elementwise", ("elementwise", "vectorized", "unrolled")),
)


def train_mfu(params: int, tokens_per_s: float, peak_flops: float = DATASHEET_BF16) -> float:
    """Model FLOPs utilisation of training: 6 x params x tokens/s / peak_flops (a forward and a backward pass, 6 N
    FLOPs per trained token; attention's own FLOPs and any recomputation are not counted)."""
    return 6 * params * tokens_per_s / peak_flops


def kernel_bound_mfu(params: int, tokens_per_step: float, kernel_ms_per_step: float,
                     peak_flops: float = DATASHEET_BF16) -> float:
    """The MFU a step would reach if the card ran its kernels back to back, the host never the limit:

        6 x params x tokens_per_step / (kernel seconds per step x peak_flops)

    `train_mfu` at the rate the kernels' time allows (from a profile) instead of the step's wall time. What no
    host-side lever (asynchronous steps, CUDA graphs) can take a step past: beyond it only faster or fewer kernels
    help."""
    if kernel_ms_per_step <= 0:
        raise ValueError(f"kernel_ms_per_step must be positive, not {kernel_ms_per_step}")
    return train_mfu(params, tokens_per_step / (kernel_ms_per_step / 1e3), peak_flops)


def kernel_kinds(kernels, steps: int) -> dict:
    """Milliseconds per step of device time by what the kernels do (`KERNEL_KINDS`, by name), the rest as other:
    where a step's kernel time goes beyond the top kernels."""
    kinds: dict[str, float] = {}
    for e in kernels:
        name = e.key.lower()
        kind = next((k for k, words in KERNEL_KINDS if any(w in name for w in words)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + e.self_device_time_total / steps / 1e3
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def is_annotation(event) -> bool:
    """A record_function range mirrored on the card's timeline (torch marks it; older builds only by name)."""
    return bool(getattr(event, "is_user_annotation", False)) or event.key == STEP_SPAN or "#" in event.key


def run_workers(script: Path, out: Path, counts: list[int], label: str, examples: int, shape: str,
                device: str = "cuda") -> dict:
    """N processes of bench_gpu.py's training section, started together on the same card: their aggregate
    tokens/s over the span from the first train call's start to the last one's end (a conservative aggregate:
    processes do not start their train calls at the same instant)."""
    result = {}
    for n in counts:
        procs = []
        for i in range(n):
            dest = out / f"workers-{n}" / f"w{i}"
            dest.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(script), "--out", str(dest), "--sections", "training", "--shape", shape,
                   "--train-runs", label, "--examples", str(examples), "--no-profile", "--device", device]
            with open(dest / "worker.log", "w") as log:
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        codes = [p.wait() for p in procs]
        runs, errors = [], []
        for i in range(n):
            path = out / f"workers-{n}" / f"w{i}" / "bench_gpu.json"
            data = json.loads(path.read_text()) if path.exists() else {}
            run = data.get("training", {}).get(label)
            if run and "error" not in run:
                runs.append(run)
            elif run:  # the worker wrote its error (8 workers of 19 GiB each ran out of memory on an 80 GB card)
                errors.append(run["error"].strip().splitlines()[-1][:300])
        if len(runs) < n:
            result[str(n)] = {"failed": n - len(runs), "exit_codes": codes, "errors": sorted(set(errors))}
            continue
        span = max(r["train_call_end_unix"] for r in runs) - min(r["train_call_start_unix"] for r in runs)
        tokens = sum(r["tokens"] for r in runs)
        result[str(n)] = {"tokens_per_s": tokens / span, "span_seconds": span,
                          "per_worker_tokens_per_s": [r["train_call_tokens_per_s"] for r in runs],
                          "mfu_datasheet": train_mfu(runs[0]["params"], tokens / span),
                          "peak_memory_gb": [r["peak_memory_gb"] for r in runs]}
    return result
