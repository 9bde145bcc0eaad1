"""A run killed mid-way resumes at its first unfinished step, keeps what finished, and selects the same."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from loop.config import build_config
from loop.engine import Engine, plan_steps
from loop.store import ConfigMismatchError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

RUNNER = """
import sys
from loop.config import build_config
from loop.engine import Engine
Engine(build_config("smoke", overrides=sys.argv[1:])).run_all(progress=False)
"""


def overrides(model_dir, out):
    return [f"model.name_or_path={model_dir}", f"out_dir={out}", "selection.budgets=[4, 4]", "selection.iid_extra_budgets=[]",
            "torch_threads=1", "seeds=[0]", "data.n_seeds=8", "data.pool_per_seed=2", "data.n_test=8"]


def selections(out: Path) -> dict:
    return {str(p.relative_to(out)): pl.read_parquet(p)["id"].to_list()
            for p in sorted(out.glob("steps/*/*/round-*/selected.parquet"))}


def test_killed_run_resumes_and_selects_the_same(tiny_model_dir, tmp_path):
    reference = tmp_path / "reference"
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, reference))).run_all(progress=False)
    expected = selections(reference)
    n_steps = len(plan_steps(build_config("smoke", overrides=overrides(tiny_model_dir, reference))))
    assert len(expected) == n_steps == 9  # round 0 + 4 strategies x 2 rounds

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, *overrides(tiny_model_dir, killed)], env=env,
                            cwd=ROOT, start_new_session=True)
    deadline = time.time() + 300
    while len(list(killed.glob("steps/*/*/round-*/step.json"))) < 3 and time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in killed.glob("steps/*/*/round-*/*.parquet")}
    assert 3 <= len({p.parent for p in finished}) < n_steps

    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, killed))).run_all(progress=False)
    assert selections(killed) == expected
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # nothing finished was rewritten
    assert not list(killed.glob("steps/*/*/.round-*"))  # no half-written step left behind
    info = json.loads((killed / "steps/seed-0/premem/round-2/step.json").read_text())
    assert info["n_examples"] == 8 + 4 + 4


def test_a_different_config_in_the_same_folder_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, out))).prepare()
    with pytest.raises(ConfigMismatchError, match="train.epochs"):
        Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, out), "train.epochs=3"])).prepare()
