"""A run killed mid-way (by loop.faults at a named point) resumes at its first unfinished step, keeps what
finished, and ends with the selections and tables of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from loop.config import build_config
from loop.run.engine import Engine
from loop.run.plan import plan_steps
from loop.store import ConfigMismatchError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

RUNNER = """
import sys
from loop.config import build_config
from loop.run.engine import Engine
Engine(build_config("smoke", overrides=sys.argv[1:])).run_all(progress=False)
"""


def overrides(model_dir, out):
    return [f"model.name_or_path={model_dir}", f"out_dir={out}", "selection.budgets=[4, 4]", "selection.iid_extra_budgets=[]",
            "torch_threads=1", "seeds=[0]", "data.n_seeds=8", "data.pool_per_seed=2", "data.n_test=8"]


def selections(out: Path) -> dict:
    return {str(p.relative_to(out)): pl.read_parquet(p)["id"].to_list()
            for p in sorted(out.glob("steps/*/*/round-*/selected.parquet"))}


def tables(out: Path) -> dict:
    """Every step's tables but its timings, as rows."""
    return {str(p.relative_to(out)): pl.read_parquet(p).to_dicts()
            for p in sorted(out.glob("steps/*/*/round-*/*.parquet")) if p.name != "timings.parquet"}


def killed_at(point: str, model_dir, out: Path) -> int:
    """Run in a process group of its own that loop.faults SIGKILLs at `point` ('name:k'); returns the exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CURATION_LOOP_KILL_AT": point}
    proc = subprocess.run([sys.executable, "-c", RUNNER, *overrides(model_dir, out)], env=env, cwd=ROOT,
                          start_new_session=True, timeout=600)
    return proc.returncode


def test_killed_run_resumes_and_selects_the_same(tiny_model_dir, tmp_path):
    """Killed with the third step's folder written but not yet renamed, then killed again at the second optimizer
    step of the resume: what finished is kept untouched, the half-made folder is never read, and the run ends with
    the tables of an uninterrupted one."""
    reference = tmp_path / "reference"
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, reference))).run_all(progress=False)
    expected = selections(reference)
    n_steps = len(plan_steps(build_config("smoke", overrides=overrides(tiny_model_dir, reference))))
    assert len(expected) == n_steps == 9  # round 0 + 4 strategies x 2 rounds

    killed = tmp_path / "killed"
    assert killed_at("step.rename:3", tiny_model_dir, killed) == -signal.SIGKILL
    assert len(list(killed.glob("steps/*/*/round-*/step.json"))) == 2
    assert len(list(killed.glob("steps/*/*/.round-*.tmp-*"))) == 1  # complete but never renamed: not a step
    finished = {p: p.stat().st_mtime_ns for p in killed.glob("steps/*/*/round-*/*.parquet")}
    assert killed_at("train.step:2", tiny_model_dir, killed) == -signal.SIGKILL
    assert len(list(killed.glob("steps/*/*/round-*/step.json"))) == 2  # the killed resume finished nothing

    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, killed))).run_all(progress=False)
    assert selections(killed) == expected
    assert tables(killed) == tables(reference)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # nothing finished was rewritten
    assert not list(killed.rglob(".*.tmp-*"))  # what the kills left was swept
    info = json.loads((killed / "steps/seed-0/premem/round-2/step.json").read_text())
    assert info["n_examples"] == 8 + 4 + 4


def test_a_different_config_in_the_same_folder_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, out))).prepare()
    with pytest.raises(ConfigMismatchError, match="train.epochs"):
        Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, out), "train.epochs=3"])).prepare()


def test_a_store_started_before_a_config_field_existed_resumes_where_the_field_is_at_its_default(tiny_model_dir,
                                                                                                tmp_path):
    """A later release adds config fields; a store whose config.yaml predates them resumes under it, unless the
    resume sets such a field to something the earlier release could not have run."""
    out = tmp_path / "run"
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, out))).prepare()
    stored = yaml.safe_load((out / "config.yaml").read_text())
    del stored["train"]["async_step"], stored["train"]["kernels"]  # as the release before those levers wrote it
    (out / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, out))).prepare()
    with pytest.raises(ConfigMismatchError, match="train.async_step"):
        Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, out), "train.async_step=true"])).prepare()


def test_more_seeds_add_replicates_to_a_finished_run_and_keep_what_it_had(tiny_model_dir, tmp_path):
    """A report that says the comparison needs more replicates is answered in the same run store: a rerun with more
    `seeds` runs only the new replicates, leaves the finished ones untouched, and ends with the tables of a run that
    had every seed from the start (replicates are independent draws)."""
    both = [*overrides(tiny_model_dir, tmp_path / "reference"), "seeds=[0, 1]"]
    Engine(build_config("smoke", overrides=both)).run_all(progress=False)

    grown = tmp_path / "grown"
    Engine(build_config("smoke", overrides=overrides(tiny_model_dir, grown))).run_all(progress=False)
    finished = {p: p.stat().st_mtime_ns for p in grown.glob("steps/*/*/round-*/*.parquet")}
    assert finished and not list(grown.glob("steps/seed-1"))
    Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, grown), "seeds=[0, 1]"])).run_all(
        progress=False)
    assert selections(grown) == selections(tmp_path / "reference")
    assert tables(grown) == tables(tmp_path / "reference")
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # nothing finished was rewritten
    manifest = json.loads((grown / "manifest.json").read_text())
    assert manifest["resumes"][-1]["replicates_added"] == [1] and manifest["resumes"][-1]["changes"] == []
    assert set(manifest["examples"]) == {"0", "1"}  # the new replicate's data hash is checked on later resumes

    # Dropping a finished replicate, or adding one together with another change, is another run.
    with pytest.raises(ConfigMismatchError, match="seeds"):
        Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, grown), "seeds=[1]"])).prepare()
    with pytest.raises(ConfigMismatchError, match="train.epochs"):
        Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, grown), "seeds=[0, 1, 2]",
                                                "train.epochs=3"])).prepare()


def test_more_strategies_add_competitors_to_a_finished_run_and_keep_what_it_had(tiny_model_dir, tmp_path):
    """A strategy written after a comparison finished is compared in the same run store: a rerun with more
    selection.strategies runs only the new chains, leaves the finished ones untouched, and ends with the tables of a
    run that had every strategy from the start (a chain reads no other competitor's)."""
    kept = "selection.strategies=[random, loss]"
    grown_list = "selection.strategies=[random, loss, {name: loss, label: loss_again}]"
    Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, tmp_path / "reference"), grown_list])).run_all(
        progress=False)

    grown = tmp_path / "grown"
    Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, grown), kept])).run_all(progress=False)
    finished = {p: p.stat().st_mtime_ns for p in grown.glob("steps/*/*/round-*/*.parquet")}
    assert finished and not list(grown.glob("steps/*/loss_again"))
    Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, grown), grown_list])).run_all(progress=False)
    assert selections(grown) == selections(tmp_path / "reference")
    assert tables(grown) == tables(tmp_path / "reference")
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # nothing finished was rewritten
    resume = json.loads((grown / "manifest.json").read_text())["resumes"][-1]
    assert resume["strategies_added"] == ["loss_again"] and "replicates_added" not in resume

    # An added strategy may read only what the stored run computed: perplexity's base-model signal was never
    # computed, nor the dev accuracy of every round that auto rewards itself with.
    with pytest.raises(ConfigMismatchError, match="'perplexity' reads \\['base_perplexity'\\]"):
        Engine(build_config("smoke", overrides=[
            *overrides(tiny_model_dir, grown),
            "selection.strategies=[random, loss, {name: loss, label: loss_again}, perplexity]"])).prepare()
    with pytest.raises(ConfigMismatchError, match="dev accuracy"):
        Engine(build_config("smoke", overrides=[
            *overrides(tiny_model_dir, grown),
            "selection.strategies=[random, loss, {name: loss, label: loss_again}, {name: auto, params: {arms: [loss]}}]",
        ])).prepare()
    # A stored strategy changed or dropped is another run.
    with pytest.raises(ConfigMismatchError, match="selection.strategies"):
        Engine(build_config("smoke", overrides=[*overrides(tiny_model_dir, grown), kept])).prepare()


def test_a_resume_under_code_whose_auto_defaults_changed_stops_before_it_decides(tiny_model_dir, tmp_path,
                                                                                monkeypatch):
    """The manifest keeps each `auto`'s params as the code ran them (defaults and what a null means): a resume under
    code that reads them otherwise would decide otherwise than the chain began, so it stops and says which."""
    from loop.control.controller import AutoParams
    from loop.store import ResumeMismatchError

    with_auto = [*overrides(tiny_model_dir, tmp_path),
                 "selection.strategies=[random, {name: auto, params: {arms: [loss]}}]"]
    Engine(build_config("smoke", overrides=with_auto)).prepare()
    ran = json.loads((tmp_path / "manifest.json").read_text())["strategy_params"]["auto"]
    assert ran["arms"] == ["random", "loss"] and ran["lookahead_epochs"] == "null: the round's own epochs"
    Engine(build_config("smoke", overrides=with_auto)).prepare()  # the same code resumes
    monkeypatch.setattr(AutoParams, "NULL_MEANS", {**AutoParams.NULL_MEANS, "lookahead_epochs": "half the round's"})
    with pytest.raises(ResumeMismatchError, match="strategy_params.auto.lookahead_epochs"):
        Engine(build_config("smoke", overrides=with_auto)).prepare()
