"""A run store at an fsspec location (here a local filesystem behind a file:// URL): a run started by one process
(machine A, its own local copy) and finished by another (machine B, an empty copy) ends with the tables of a run in
a local folder; B recomputes nothing A committed; a push cut short is repaired by A's next open; the report reaches
the location."""

import json
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine
from loop.run.plan import Step, plan_steps
from reports.run import write_run_report

pytestmark = pytest.mark.integration


def overrides(model_dir, out, *extra):
    return [f"model.name_or_path={model_dir}", f"out_dir={out}", "selection.budgets=[4]", "selection.iid_extra_budgets=[]",
            "selection.strategies=[random, loss]", "torch_threads=1", "seeds=[0]", "data.n_seeds=8",
            "data.pool_per_seed=2", "data.n_test=8", *extra]


def tables(root: Path) -> dict:
    return {str(p.relative_to(root)): pl.read_parquet(p).to_dicts()
            for p in sorted(root.glob("steps/*/*/round-*/*.parquet")) if p.name != "timings.parquet"}


def test_a_run_at_a_url_is_shared_by_two_machines_and_equals_a_local_run(tiny_model_dir, tmp_path):
    local = tmp_path / "local"
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, local))).run_all(progress=False)

    remote = tmp_path / "bucket" / "run"
    url = f"file://{remote}"
    a = Engine(build_config("smoke", overrides=overrides(tiny_model_dir, url, f"scale.cache_dir={tmp_path / 'a'}")))
    a.prepare()
    a.run_step(Step(0, "shared", 0))  # machine A commits round 0, then stops
    a.close()
    assert (remote / "steps/seed-0/shared/round-0/step.json").exists() and (remote / "config.yaml").exists()
    record = remote / "steps/seed-0/shared/round-0/step.json"
    record.unlink()  # as if A was killed while pushing, before the record (the commit) went up
    (remote / "steps/seed-0/shared/round-0/ledger.parquet").write_bytes(b"half")
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, url, f"scale.cache_dir={tmp_path / 'a'}"))).prepare()
    assert record.exists()  # A's next open pushed its committed step again, tables first
    assert pl.read_parquet(remote / "steps/seed-0/shared/round-0/ledger.parquet").height
    committed = {p: p.stat().st_mtime_ns for p in remote.glob("steps/*/*/round-*/*")}

    cfg_b = build_config("smoke", overrides=overrides(tiny_model_dir, url, f"scale.cache_dir={tmp_path / 'b'}"))
    Engine(cfg_b).run_all(progress=False)  # machine B: an empty copy; reads round 0 from the location
    assert all(p.stat().st_mtime_ns == t for p, t in committed.items())  # A's step was not recomputed
    assert len(list(remote.glob("steps/*/*/round-*/step.json"))) == len(plan_steps(cfg_b)) == 3
    assert tables(remote) == tables(local)
    assert len(json.loads((remote / "manifest.json").read_text())["resumes"]) == 2  # A's second open and B's

    index = write_run_report(url, cache_dir=tmp_path / "c")  # a third copy, pulled from the location alone
    assert index.exists() and (remote / "report" / "index.html").read_bytes() == index.read_bytes()
    assert set(json.loads((remote / "report" / "summary.json").read_text())["strategies"]) == {"random", "loss"}
