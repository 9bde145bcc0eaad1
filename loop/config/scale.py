"""The scale section: where a step's sampling and scoring run (in process, or sharded over a cluster). How to
run, not what is run: never stored with the run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from loop.config.base import Strict


class ScoringShardsConfig(Strict):
    """Where a step's sampling and teacher-forced scoring run (`loop.model.shards`): in the step's process, or cut
    into shards of whole work units that a Prefect task runner spreads over a Ray or Dask cluster. How to run, not
    what: every unit computes the same wherever it runs, so the results do not depend on these settings."""

    runner: Literal["none", "ray", "dask"] = Field(
        "none", description="none = in the step's process; ray = Prefect's RayTaskRunner (prefect-ray); dask = "
        "Prefect's DaskTaskRunner (prefect-dask)")
    address: str | None = Field(
        None, description="the cluster: ray = a Ray address (ray start --head prints it), dask = a scheduler "
        "address (tcp://host:8786); null = a local cluster of `shards` worker processes, started once per process")
    shards: int = Field(2, gt=0, description="tasks each sampling or scoring call is cut into (whole units each)")
    gpus_per_shard: float | Literal["auto"] = Field(
        "auto", description="ray: GPUs each shard task asks for; auto = 1 where the cluster has GPUs, else 0")
    retries: int = Field(2, ge=0, description="times a failed shard is run again (alone) before the step fails")
    checkpoint_dir: str | None = Field(
        None, description="where a bound checkpoint is saved for the shards to load: a folder every worker reads "
        "(a shared file system on a multi-machine cluster); null = the run store's backend/shards folder")


class ScaleConfig(Strict):
    """How a comparison spreads over processes and machines (flows/curation.py): how to run, not what is run, so not
    part of the stored config (a run may resume in another mode).

    - `runs: steps`: this flow run runs every step as a task, `workers` at a time (Prefect's process pool).
    - `runs: deployments`: every (replicate, strategy) chain of rounds is a flow run of the deployment
      `chain_deployment` (`curation-chain/...`), which a work pool's workers take, on this machine or others sharing the
      run store; round 0 of each replicate runs once, before the chains that read it. The comparison flow waits for them
      all and writes the report from the stored tables.
    """

    runs: Literal["steps", "deployments"] = "steps"
    chain_deployment: str = Field("curation-chain/default", description="flow/deployment name each chain runs as")
    gpu_limit: str | None = Field(
        None, description="a Prefect global concurrency limit every step holds one slot of while it runs: create it "
        "with as many slots as GPUs (prefect gcl create gpus --limit 8) so that no two steps share a card; it "
        "must exist")
    poll_s: float = Field(5.0, gt=0, description="how often the comparison flow checks on its chains' flow runs")
    cache_dir: str | None = Field(
        None, description="with out_dir an fsspec URL (s3://bucket/runs/x): the local working copy of the run store; "
        "null = ~/.cache/curation-loop/stores/HASH (CURATION_LOOP_CACHE replaces ~/.cache/curation-loop)")
    scoring: ScoringShardsConfig = Field(
        ScoringShardsConfig(), description="sharded sampling and scoring of each step's checkpoints on a Ray or "
        "Dask cluster")
