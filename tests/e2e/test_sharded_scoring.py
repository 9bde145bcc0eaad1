"""End to end: a small comparison through the `curation-loop` flow with every checkpoint's sampling and scoring cut
into 2 shards on Prefect's DaskTaskRunner, a local Dask cluster of 2 worker processes. One shard fails on its first
attempt (loop.faults) and is retried alone; the stored tables equal a single-process run's. (Prefect's Ray task
runner on a real 2-node Ray cluster runs in tests/e2e/test_scale_out.py, inside chains on a work pool.)"""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# Units of 3 items: every call of the comparison is several units, dealt into 2 shards.
SMALL = ["seeds=[0]", "selection.strategies=[loss]", "selection.budgets=[4]", "data.n_seeds=8", "data.n_test=8",
         "data.n_dev=4", "train.epochs=1", "sampling.max_new_tokens=48", "workers=1", "sampling.unit=3"]


def tables(out: Path) -> dict:
    return {str(p.relative_to(out)): pl.read_parquet(p).to_dicts()
            for p in sorted(out.glob("steps/*/*/round-*/*.parquet")) if p.name != "timings.parquet"}


def test_sharded_scoring_on_a_dask_cluster_equals_a_single_process_run(prefect_env, tmp_path):
    pytest.importorskip("prefect_dask")
    env, _, _ = prefect_env
    marker = tmp_path / "failed-once"
    env = {**env, "CURATION_LOOP_FAIL_ONCE": f"shard.unit:{marker}"}  # the local cluster's workers are the flow's
    scale = ["scale.scoring.runner=dask", "scale.scoring.shards=2"]
    out = tmp_path / "sharded"
    single = tmp_path / "single"
    Engine(build_config("smoke", overrides=[*SMALL, f"out_dir={single}"])).run_all(progress=False)
    run = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--preset", "smoke", "--out", str(out), *SMALL, *scale],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert marker.exists()  # a shard did fail
    assert tables(out) == tables(single)

    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        shards = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=" units ")))
    assert 0 < len(shards) < 200 and all(t.state.is_completed() for t in shards)  # 200: one page of the API
    # The failed shard ran twice; every other shard once: it was retried alone.
    assert sorted(t.run_count for t in shards)[-2:] == [1, 2], [(t.name, t.run_count) for t in shards]
    assert sum(t.run_count == 2 for t in shards) == 1
