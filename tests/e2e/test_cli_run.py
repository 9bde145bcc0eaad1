"""End to end: `curation-loop run` as a user types it, with no Prefect server configured: one temporary server
serves the flow and both of its worker processes, and the report and verdict come out."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_cli_run_starts_one_server_for_the_flow_and_its_workers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONPATH": str(ROOT)})
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--preset", "smoke", "--out", str(out), "workers=2",
         "train.epochs=1", "data.n_test=8", "sampling.max_new_tokens=48",
         "selection.strategies=[random, loss]", "data.n_seeds=8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    # Each spawned worker used to start a temporary server of its own.
    assert log.count("Starting temporary server") == 1, log[-3000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["strategies"]["random"]["points"] and "Report written to" in log
