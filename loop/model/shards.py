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
from loop.model.backends import Bound, TransformersBackend
from loop.model.formatting import Encoded
from loop.seeds import derived_seed


# -- the unit plan ------------------------------------------------------------------------------------------------
def unit_slices(n_items: int, unit: int) -> list[slice]:
    """The units of a call over `n_items` items: [0, U), [U, 2U), ... (none for no items)."""
    if unit <= 0:
        raise ValueError(f"a work unit holds at least one item, got {unit}")
    return [slice(start, min(start + unit, n_items)) for start in range(0, n_items, unit)]


def unit_seed(seed: int, index: int) -> int:
    """The sampling seed of unit `index` of a call under `seed`: the call's own for unit 0, derived for the others."""
    return int(seed) if index == 0 else derived_seed("unit", seed, index)


def shard_ranges(n_units: int, shards: int) -> list[range]:
    """`n_units` units dealt into at most `shards` runs of consecutive units, as even as can be (none empty)."""
    if shards <= 0:
        raise ValueError(f"shards must be positive, got {shards}")
    count = min(shards, n_units)
    bounds = [round(i * n_units / count) for i in range(count + 1)] if count else [0]
    return [range(bounds[i], bounds[i + 1]) for i in range(count)]


# -- units in this process ----------------------------------------------------------------------------------------
class UnitSampler:
    """A sampler whose calls run unit by unit on `inner` (the results merged in order)."""

    def __init__(self, inner, unit: int):
        self.inner, self.unit = inner, unit

    def sample(self, questions: list[str], n: int, *, seed: int, answer_prefix: str = "") -> list[list[str]]:
        out: list[list[str]] = []
        for index, part in enumerate(unit_slices(len(questions), self.unit)):
            out += self.inner.sample(questions[part], n, seed=unit_seed(seed, index), answer_prefix=answer_prefix)
        return out


class UnitScorer:
    """A scorer whose calls run unit by unit on `inner`."""

    def __init__(self, inner, unit: int):
        self.inner, self.unit = inner, unit

    def mean_nll(self, items: Sequence[Encoded]) -> np.ndarray:
        parts = [np.asarray(self.inner.mean_nll(items[part]), dtype=np.float64)
                 for part in unit_slices(len(items), self.unit)]
        return np.concatenate(parts) if parts else np.zeros(0)


def in_units(bound: Bound, unit: int) -> Bound:
    """`bound` with every call cut into work units (run here, one after another)."""
    return Bound(UnitSampler(bound.sampler, unit), UnitScorer(bound.scorer, unit))


# -- shards elsewhere ---------------------------------------------------------------------------------------------
class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], jobs: list[Any], labels: list[str]) -> list[Any]:
        """fn(job) for every job, wherever the executor runs them; the results in job order. A job that fails is
        retried alone as the executor allows; if it still fails, map raises."""
        ...


class LocalExecutor:
    """Runs the jobs one after another in this process (each shard still loads its checkpoint from disk)."""

    def map(self, fn, jobs, labels):
        return [fn(job) for job in jobs]


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


_LOADED: dict[str, Any] = {}  # per worker process: the checkpoint its last shard ran on


def _device(cfg: RunConfig) -> torch.device:
    """The worker's device: its (Ray-assigned) GPU where it has one and the run is not CPU-only."""
    return torch.device("cuda") if cfg.device != "cpu" and torch.cuda.is_available() else torch.device("cpu")


def _cache_key(job: ShardJob) -> str:
    return f"{job.checkpoint or 'base'}|{job.cfg.model.model_dump_json()}"


def _worker_backend(job: ShardJob) -> tuple[TransformersBackend, Any]:
    """This worker's backend and the job's checkpoint, loaded once per worker and checkpoint."""
    if _LOADED.get("key") != _cache_key(job):
        _LOADED.clear()  # one checkpoint in memory per worker
        device = _device(job.cfg)
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
    """The job's checkpoint and a backend over it, into this worker's cache."""
    from loop.model.loading import load_base, load_tokenizer
    from loop.model.precision import resolve_precision

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
        units = [items[s] for s in unit_slices(len(items), cfg.sampling.unit)]
        seeds = [unit_seed(seed, i) for i in range(len(units))]
        ranges = shard_ranges(len(units), cfg.scale.scoring.shards)
        jobs = [ShardJob(cfg, self.path, self.adapter, kind, units[r.start:r.stop], seeds[r.start:r.stop], n,
                         answer_prefix) for r in ranges]
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
        self.cfg, self.executor = cfg, executor
        configured = cfg.scale.scoring.checkpoint_dir
        self.folder = Path(configured) if configured else Path(workdir) / "shards"

    def _save(self, model, tag: str) -> tuple[str | None, bool]:
        """Save `model` for the shards under a folder no other bind uses (a worker's cache key): (folder, whether it
        is a LoRA adapter over the base); (None, False) for the base itself (tag `base`), which workers read from
        its own files."""
        if tag == "base":
            return None, False
        from loop.model.sampling.base import hf_model

        path = self.folder / f"{tag}-{uuid.uuid4().hex[:12]}"
        adapter = hasattr(model, "peft_config")
        # The weights as they are (no cast): the shards must compute exactly what this process would.
        (model if adapter else hf_model(model)).save_pretrained(path)
        return str(path), adapter

    @contextlib.contextmanager
    def bind(self, model, *, tag: str) -> Iterator[Bound]:
        path, adapter = self._save(model, tag)
        checkpoint = _Checkpoint(self, path, tag, adapter)
        try:
            yield Bound(_ShardedSampler(checkpoint), _ShardedScorer(checkpoint))
        finally:
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        pass
