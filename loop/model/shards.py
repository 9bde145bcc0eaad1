"""Work units and scoring shards: how a checkpoint's sampling and scoring calls are cut, run anywhere, and merged.

A call over L items (`sampler.sample(questions, n, seed=s)`, `scorer.mean_nll(items)`) is cut into units of
U = `sampling.unit` items in list order, unit u holding items [u*U, (u+1)*U):

    sample: unit u draws its completions under seed  s_u = s if u == 0 else derived_seed("unit", s, u)
    score:  unit u is one `mean_nll` call of its own (its own length-sorted batches)

A unit is thus the same computation wherever it runs and whatever else runs beside it (the samplers draw per
completion from the seed and the job's index in its call: `loop.model.sampling.draws`). A shard is a run of
consecutive units; the merge concatenates the units' results in unit order. So the ledger, the signals and the
test accuracy are the same for any number of shards and any cluster, and the same as in the step's own process
(on the same kind of device and software; on a GPU with `deterministic: true`). Unit 0 keeps the call's seed,
so a call of at most U items samples exactly as one uncut call.

Every backend's bound pair is cut into units in its own process (`in_units`). `ShardedBackend` instead sends the
units elsewhere: binding a model saves it (the LoRA adapter, or the full weights as they are) under a folder of
its own, and each shard, a job of `run_shard` on an `Executor`, loads that checkpoint onto its worker's device
(once per worker and checkpoint) and runs its units there through `TransformersBackend`. The executor is the
orchestrator's (flows/shards.py: Prefect's Ray or Dask task runner, which also retries a failed shard alone);
this module never imports one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from loop import faults
from loop.config import RunConfig
from loop.model.inprocess import Backend, Bound, TransformersBackend
from loop.model.formatting import Encoded
from loop.units import cut, shard_ranges


# -- units in this process ----------------------------------------------------------------------------------------
class UnitSampler:
    """A sampler whose calls run unit by unit on `inner` (the results merged in order)."""

    def __init__(self, inner, unit: int):
        self.inner, self.unit = inner, unit

    def sample(self, questions: list[str], n: int, *, seed: int, answer_prefix: str = "") -> list[list[str]]:
        out: list[list[str]] = []
        for part, part_seed in cut(list(questions), self.unit, seed):
            out += self.inner.sample(part, n, seed=part_seed, answer_prefix=answer_prefix)
        return out


class UnitScorer:
    """A scorer whose calls run unit by unit on `inner`."""

    def __init__(self, inner, unit: int):
        self.inner, self.unit = inner, unit

    def mean_nll(self, items: Sequence[Encoded]) -> np.ndarray:
        parts = [np.asarray(self.inner.mean_nll(part), dtype=np.float64) for part, _ in cut(list(items), self.unit)]
        return np.concatenate(parts) if parts else np.zeros(0)


def in_units(bound: Bound, unit: int) -> Bound:
    """`bound` with every call cut into work units (run here, one after another)."""
    return Bound(UnitSampler(bound.sampler, unit), UnitScorer(bound.scorer, unit))


class UnitBackend:
    """`inner` with every sampling and scoring call cut into work units (`loop.model.shards`)."""

    def __init__(self, inner: Backend, unit: int):
        self.inner, self.unit, self.name = inner, unit, inner.name

    @contextlib.contextmanager
    def bind(self, model, *, tag: str) -> Iterator[Bound]:
        with self.inner.bind(model, tag=tag) as bound:
            yield in_units(bound, self.unit)

    def close(self) -> None:
        self.inner.close()


# -- shards elsewhere ---------------------------------------------------------------------------------------------
class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], jobs: list[Any], labels: list[str]) -> list[Any]:
        """fn(job) for every job, wherever the executor runs them; the results in job order. A job that fails is
        retried alone as the executor allows; if it still fails, map raises."""
        ...


class LocalExecutor:
    """Runs the jobs one after another in this process (each shard still loads its checkpoint from disk), and lets
    the loaded copy go afterwards: this process is the one training, and its memory is training's."""

    def map(self, fn, jobs, labels):
        try:
            return [fn(job) for job in jobs]
        finally:
            release_worker_model()


@dataclass(frozen=True)
class ShardJob:
    """The units one shard runs: `kind` "sample" (each unit a list of questions) or "nll" (each a list of Encoded),
    on the checkpoint saved at `checkpoint` (None = the base; `lora`: an adapter folder over the base)."""

    cfg: RunConfig
    checkpoint: str | None
    lora: bool
    kind: str
    units: list[list]
    seeds: list[int]
    n: int = 0
    answer_prefix: str = ""
    device_type: str = "cpu"  # the step's: a shard computes on the same kind of device, or not at all


_LOADED: dict[str, Any] = {}  # per worker process: the checkpoint its last shard ran on


def _device(job: ShardJob) -> torch.device:
    """The worker's device, of the step's kind: its (Ray-assigned) GPU where the step runs on one."""
    if job.device_type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("the step runs on a GPU but this scoring shard's worker has none: a shard on another "
                               "kind of device would compute other numbers. Give the shards GPUs "
                               "(scale.scoring.gpus_per_shard, a cluster with GPUs) or run the step on the CPU")
        return torch.device("cuda")
    return torch.device("cpu")


def release_worker_model() -> None:
    """Drop the checkpoint this process loaded for its shards (and the GPU memory it held)."""
    _LOADED.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _cache_key(job: ShardJob) -> str:
    """The checkpoint and the whole config the worker's backend was built from (the base is one folder for all
    runs; its sampling and precision settings are each run's own)."""
    return f"{job.checkpoint or 'base'}|{job.cfg.model_dump_json()}"


def _worker_backend(job: ShardJob) -> tuple[TransformersBackend, Any]:
    """This worker's backend and the job's checkpoint, loaded once per worker and checkpoint."""
    if _LOADED.get("key") != _cache_key(job):
        release_worker_model()  # one checkpoint in memory per worker
        device = _device(job)
        with _random_state_kept(device):
            _load(job, device)
    return _LOADED["backend"], _LOADED["model"]


@contextlib.contextmanager
def _random_state_kept(device: torch.device):
    """Loading draws random numbers (peft initialises an adapter's layers before reading their weights): where
    the shards run in the training process (LocalExecutor), those draws would move the generator that training
    reads (the next epoch's batch order), so the process's random state is put back afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield


def _load(job: ShardJob, device: torch.device) -> None:
    """The job's checkpoint and a backend over it, into this worker's cache, under the step's numerics settings
    (deterministic kernels, torch threads, TF32 on a GPU: what the step's own process runs with)."""
    from loop.model.loading import load_base, load_tokenizer
    from loop.model.precision import configure_torch, enable_tf32, resolve_precision

    configure_torch(job.cfg)
    if device.type == "cuda":
        enable_tf32()
    dtype = resolve_precision(job.cfg.model, job.cfg.train, device).weights
    if job.checkpoint is None or not job.lora:
        source = job.cfg.model if job.checkpoint is None else job.cfg.model.model_copy(
            update={"name_or_path": job.checkpoint, "gguf_file": None})
        model = load_base(source, device, dtype)
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base(job.cfg.model, device, dtype), job.checkpoint).eval()
    backend = TransformersBackend(job.cfg, load_tokenizer(job.cfg.model), device)
    _LOADED.update(key=_cache_key(job), model=model, backend=backend)


def run_shard(job: ShardJob) -> list:
    """Run one shard's units on its checkpoint; the result of each unit, in order (completions, or NLL arrays)."""
    backend, model = _worker_backend(job)
    out = []
    with backend.bind(model, tag="shard") as bound:
        for unit, seed in zip(job.units, job.seeds):
            faults.reached("shard.unit")
            if job.kind == "sample":
                out.append(bound.sampler.sample(unit, job.n, seed=seed, answer_prefix=job.answer_prefix))
            else:
                out.append(np.asarray(bound.scorer.mean_nll(unit), dtype=np.float64))
    return out


class _Checkpoint:
    """A bound model as the shards see it: where it was saved, and the executor that runs them."""

    def __init__(self, backend: ShardedBackend, path: str | None, tag: str, adapter: bool):
        self.backend, self.path, self.tag, self.adapter = backend, path, tag, adapter
        self.calls = 0

    def run(self, kind: str, items: list, seed: int = 0, n: int = 0, answer_prefix: str = "") -> list:
        cfg = self.backend.cfg
        units, seeds = zip(*cut(items, cfg.sampling.unit, seed)) if items else ((), ())
        ranges = shard_ranges(len(units), cfg.scale.scoring.shards)
        jobs = [ShardJob(cfg, self.path, self.adapter, kind, list(units[r.start:r.stop]),
                         list(seeds[r.start:r.stop]), n, answer_prefix, self.backend.device.type) for r in ranges]
        self.calls += 1
        labels = [f"{self.tag} {kind} {self.calls} units {r.start}-{r.stop - 1}" for r in ranges]
        results = self.backend.executor.map(run_shard, jobs, labels)
        return [unit_result for shard in results for unit_result in shard]


class _ShardedSampler:
    def __init__(self, checkpoint: _Checkpoint):
        self.checkpoint = checkpoint

    def sample(self, questions: list[str], n: int, *, seed: int, answer_prefix: str = "") -> list[list[str]]:
        units = self.checkpoint.run("sample", list(questions), seed, n, answer_prefix)
        return [completions for unit in units for completions in unit]


class _ShardedScorer:
    def __init__(self, checkpoint: _Checkpoint):
        self.checkpoint = checkpoint

    def mean_nll(self, items: Sequence[Encoded]) -> np.ndarray:
        units = self.checkpoint.run("nll", list(items))
        return np.concatenate(units) if units else np.zeros(0)


class ShardedBackend:
    """Sampling and scoring of each bound model in shards on `executor`'s workers (`scale.scoring`)."""

    name = "sharded"

    def __init__(self, cfg: RunConfig, tokenizer, device: torch.device, workdir: Path, executor: Executor):
        self.cfg, self.executor, self.device = cfg, executor, device
        configured = cfg.scale.scoring.checkpoint_dir
        self.folder = Path(configured) if configured else Path(workdir) / "shards"

    def _save(self, model, tag: str, path: Path) -> bool:
        """Save `model` for the shards at `path`; whether it is a LoRA adapter over the base."""
        from loop.model.sampling.base import hf_model

        adapter = hasattr(model, "peft_config")
        # The weights as they are (no cast): the shards must compute exactly what this process would.
        (model if adapter else hf_model(model)).save_pretrained(path)
        return adapter

    @contextlib.contextmanager
    def bind(self, model, *, tag: str) -> Iterator[Bound]:
        """The tag `base` binds the base itself, which the shards read from its own files. Any other model
        is saved under a folder no other bind uses (a worker's cache key), named as the run store's sweep of dead
        writers' leftovers expects (`.NAME.tmp-PID-...`), so a killed step leaves no copy behind for long."""
        path = None if tag == "base" else self.folder / f".{tag}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            adapter = self._save(model, tag, path) if path is not None else False
            checkpoint = _Checkpoint(self, None if path is None else str(path), tag, adapter)
            yield Bound(_ShardedSampler(checkpoint), _ShardedScorer(checkpoint))
        finally:
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        pass
