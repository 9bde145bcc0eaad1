"""A run killed in the middle of the auto controller's lookahead (by loop.faults, just after its first probe was
kept) reruns only the probes it had not finished, and decides and selects as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RUNNER = """
import sys
from loop.config import build_config
from loop.run.engine import Engine
Engine(build_config("smoke", overrides=sys.argv[1:])).run_all(progress=False)
"""


def overrides(out):
    # The embedded base; two arms with different batches, so round 1 trains two probes.
    return [f"out_dir={out}", "seeds=[0]", "data.n_seeds=8", "data.pool_per_seed=4", "data.n_test=8",
            "data.n_dev=8", "workers=1", "torch_threads=1", "train.epochs=1", "selection.budgets=[6]",
            "selection.iid_extra_budgets=[]", "selection.strategies=[random, {name: auto, params: {arms: [loss]}}]"]


def record(out):
    return json.loads((out / "steps/seed-0/auto/round-1/step.json").read_text())


def test_a_step_killed_mid_lookahead_reuses_its_kept_probes(tmp_path):
    reference = tmp_path / "reference"
    Engine(build_config("smoke", overrides=overrides(reference))).run_all(progress=False)
    expected = record(reference)["decision"]
    assert expected["evidence"]["lookahead"]["cost"]["finetunes"] == 2
    assert expected["evidence"]["lookahead"]["cost"]["reused"] == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CURATION_LOOP_KILL_AT": "lookahead.probe:1"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, *overrides(killed)], env=env, cwd=ROOT,
                          start_new_session=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "steps/seed-0/auto/round-1/step.json").exists()
    assert len(list(killed.glob("probes/seed-0/auto/round-1/*.parquet"))) == 1  # the probe that finished

    Engine(build_config("smoke", overrides=overrides(killed))).run_all(progress=False)
    decision = record(killed)["decision"]
    assert decision["evidence"]["lookahead"]["cost"]["reused"] == 1
    assert decision["evidence"]["lookahead"]["cost"]["finetunes"] == 2
    for arm, evidence in expected["evidence"]["lookahead"]["arms"].items():
        resumed = decision["evidence"]["lookahead"]["arms"][arm]
        assert resumed["dev_loss"] == evidence["dev_loss"] and resumed["batch"] == evidence["batch"]
    assert decision["arm"] == expected["arm"]
    selected = [pl.read_parquet(out / "steps/seed-0/auto/round-1/selected.parquet")["id"].to_list()
                for out in (reference, killed)]
    assert selected[0] == selected[1]
    assert len(list(killed.glob("probes/seed-0/auto/round-1/*.parquet"))) == 2
