"""Scoring shards on Prefect's task runners: the executor behind `scale.scoring` (`loop.model.shards`).

Each shard is a Prefect task run (`score-shard`) on Prefect's RayTaskRunner (prefect-ray) or DaskTaskRunner
(prefect-dask), so it shows in the UI beside its step and Prefect retries a failed shard alone
(`scale.scoring.retries`); on Ray a shard asks for one GPU where the cluster has GPUs. One task runner per
process and `scale.scoring` setting, started at the first shard and stopped when the process exits. The workers
talk to the same Prefect server as the flow (a Ray worker is given its address): sharded scoring needs a server
they reach (`prefect server start`, PREFECT_API_URL; `curation-loop run`'s own listens on this machine only, so
a cluster of other machines needs a server of its own).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import sys

from prefect import task
from prefect.cache_policies import NO_CACHE

from loop.config import RunConfig, ScoringShardsConfig
from loop.model.shards import run_shard


@task(name="score-shard", task_run_name="{label}", cache_policy=NO_CACHE, log_prints=False)
def score_shard(job, label: str) -> list:
    return run_shard(job)


def _api_env() -> dict[str, str]:
    """The Prefect settings a worker elsewhere needs to report to this flow's server."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return {"PREFECT_API_URL": str(url)} if url else {}


def task_runner(scoring: ScoringShardsConfig):
    """The Prefect task runner `scoring` names (not yet started)."""
    if scoring.runner == "ray":
        from prefect_ray import RayTaskRunner

        env = {"env_vars": _api_env()}
        if scoring.address:
            return RayTaskRunner(address=scoring.address, init_kwargs={"runtime_env": env})
        return RayTaskRunner(init_kwargs={"num_cpus": scoring.shards, "include_dashboard": False,
                                          "runtime_env": env})
    if scoring.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if scoring.address:
            return DaskTaskRunner(address=scoring.address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": scoring.shards, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    raise ValueError(f"scale.scoring.runner {scoring.runner!r} runs no shards")


def _ship_flow_module(runner: str) -> None:
    """Let the cluster's workers unpickle this flow run's context, which holds the flow: a flow that a Prefect worker
    loaded from its file (a deployment's `flows/chain.py:curation_chain` entrypoint) lives in a top-level module
    Prefect named after the file (`chain`), which the cluster's workers cannot import, so that module travels by
    value (through Ray's own copy of cloudpickle on Ray)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    name = getattr(getattr(getattr(context, "flow", None), "fn", None), "__module__", None)
    if not name or "." in name or name == "__main__" or name not in sys.modules:
        return
    if runner == "ray":
        from ray import cloudpickle
    else:
        import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[name])


class TaskRunnerExecutor:
    """`loop.model.shards.Executor` on a Prefect task runner: one `score-shard` task run per job."""

    def __init__(self, scoring: ScoringShardsConfig):
        self.scoring = scoring
        self.runner = None

    def _gpus(self) -> float:
        if self.scoring.gpus_per_shard != "auto":
            return float(self.scoring.gpus_per_shard)
        import ray

        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def map(self, fn, jobs, labels):
        if fn is not run_shard:
            raise ValueError("the Prefect executor runs scoring shards (loop.model.shards.run_shard) only")
        if self.runner is None:
            self.runner = task_runner(self.scoring).__enter__()
            atexit.register(self.close)
        _ship_flow_module(self.scoring.runner)
        shard = score_shard.with_options(retries=self.scoring.retries)
        placement = contextlib.nullcontext()
        if self.scoring.runner == "ray":
            from prefect_ray.context import remote_options

            placement = remote_options(num_gpus=self._gpus())
        with placement:
            futures = [self.runner.submit(shard, parameters={"job": job, "label": label})
                       for job, label in zip(jobs, labels)]
        # Every shard ends (completes, or fails after its retries) before the first failure is raised: the bound
        # checkpoint is deleted as the failure leaves the bind, and the other shards may still be reading it.
        outcomes = []
        for future in futures:
            try:
                outcomes.append((True, future.result()))
            except Exception as err:  # noqa: BLE001 (re-raised below, after the others)
                outcomes.append((False, err))
        failed = [value for ok, value in outcomes if not ok]
        if failed:
            raise failed[0]
        return [value for _, value in outcomes]

    def close(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.__exit__(None, None, None)


_EXECUTORS: dict[tuple, TaskRunnerExecutor] = {}


def scoring_executor(config: RunConfig) -> TaskRunnerExecutor | None:
    """This process's executor for `config.scale.scoring` (None: the steps score in their own process)."""
    scoring = config.scale.scoring
    if scoring.runner == "none":
        return None
    package = f"prefect_{scoring.runner}"
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"scale.scoring.runner {scoring.runner!r} needs {package.replace('_', '-')}: "
                         "pip install -e '.[scale]' (prefect-ray, prefect-dask)")
    key = (scoring.runner, scoring.address, scoring.shards, os.getpid())
    if key not in _EXECUTORS:
        _EXECUTORS[key] = TaskRunnerExecutor(scoring)
    return _EXECUTORS[key]
