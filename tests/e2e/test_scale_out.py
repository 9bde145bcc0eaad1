"""End to end: a comparison spread over a real Prefect process work pool with 2 workers (`scale.runs:
deployments`) and a real Ray cluster of 2 worker nodes (`scale.scoring`): every (replicate, strategy) chain is a
flow run of the `curation-chain/default` deployment that `prefect deploy` registered from prefect.yaml, round 0
runs once before the chains that read it, a global concurrency limit of one slot keeps two steps off one (pretend)
GPU, each checkpoint's sampling and scoring runs in 2 shards on the Ray cluster (one shard fails once and is
retried alone), and the result equals a single-process run. Where PostgreSQL is installed the Prefect server
keeps its state there (tests/e2e/servers.py starts a cluster)."""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine
from loop.run.plan import plan_chains
from tests.e2e.servers import psql

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["seeds=[0]", "selection.strategies=[random, loss]", "selection.budgets=[4]", "data.n_seeds=8",
         "data.n_test=8", "data.n_dev=4", "train.epochs=1", "sampling.max_new_tokens=48", "workers=1",
         "sampling.unit=3"]  # units of 3 items: every call is several units, dealt into 2 shards


def tables(out: Path) -> dict:
    return {str(p.relative_to(out)): pl.read_parquet(p).to_dicts()
            for p in sorted(out.glob("steps/*/*/round-*/*.parquet")) if p.name != "timings.parquet"}


def prefect(env, *args, timeout=120) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def test_chains_run_as_flow_runs_on_two_workers_and_equal_a_single_process_run(prefect_env, postgres_url,
                                                                              ray_cluster, tmp_path):
    env, procs, logs = prefect_env
    address, joining, failed_once = ray_cluster
    env = {**env, **joining, "PWD": str(ROOT)}  # prefect.yaml's pull step: the flow runs work in this checkout
    prefect(env, "work-pool", "create", "local", "--type", "process")
    prefect(env, "gcl", "create", "test-gpus", "--limit", "1")
    prefect(env, "deploy", "--name", "curation-chain/default")
    for name in ("w1", "w2"):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "local", "--limit", "1", "--name", name],
            cwd=ROOT, env=env, stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT))

    out = tmp_path / "spread"
    run = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--preset", "smoke", "--out", str(out), *SMALL,
         "scale.runs=deployments", "scale.gpu_limit=test-gpus", "scale.poll_s=1", "scale.scoring.runner=ray",
         f"scale.scoring.address={address}", "scale.scoring.shards=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    worker_logs = "".join((logs / f"{n}.log").read_text()[-1500:] for n in ("w1", "w2"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + worker_logs
    assert (out / "report" / "summary.json").exists()
    assert failed_once.exists()  # a shard did fail on the cluster

    single = tmp_path / "single"
    cfg = build_config("smoke", overrides=[*SMALL, f"out_dir={single}"])
    Engine(cfg).run_all(progress=False)
    assert tables(out) == tables(single)

    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, TaskRunFilter, TaskRunFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        chains = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["curation-chain"])))
        steps = [t for t in client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="round")))
                 if t.name.startswith(("random round", "loss round", "shared round"))]
        shards = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=" units ")))
    assert sorted(r.name for r in chains) == sorted(c.label for c in plan_chains(cfg))  # one flow run per chain
    assert all(r.state.is_completed() for r in chains)
    # Every shard completed; the one that failed ran twice, every other once: it was retried alone.
    assert 0 < len(shards) < 200 and all(t.state.is_completed() for t in shards)  # 200: one page of the API
    assert sorted(t.run_count for t in shards)[-2:] == [1, 2], [(t.name, t.run_count) for t in shards]
    assert sum(t.run_count == 2 for t in shards) == 1
    spans = sorted((t.start_time, t.end_time) for t in steps)
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # one GPU slot: never two steps
    if postgres_url is not None:  # the server kept its state in PostgreSQL (PREFECT_SERVER_DATABASE_CONNECTION_URL)
        assert int(psql(postgres_url, "SELECT count(*) FROM flow_run WHERE name LIKE '%(seed 0)'")) == len(chains)
