"""loop.model.trackers without a tracker installed: run names and folders, the trainer's arguments, and the per-round
figures handed to W&B and MLflow (stand-in modules record the calls)."""

import sys
import types
from pathlib import Path

import pytest

from loop.config import build_config
from loop.model import trackers

INFO = {"round": 2, "accuracy": 0.25, "dev_accuracy": 0.5, "premem_mean": 0.125, "memorized_last_epoch": 0.75,
        "n_examples": 24, "seconds": 3.0}
FIGURES = {"loop/test_accuracy": 0.25, "loop/dev_accuracy": 0.5, "loop/premem_accuracy": 0.125,
           "loop/memorized_share": 0.75, "loop/n_examples": 24.0}


def run_of(*overrides, default_dir=Path("/store/tracking")):
    return trackers.round_run(build_config("smoke", overrides=list(overrides)), default_dir, "premem", 1, 2)


def test_no_tracker_no_run_and_todays_arguments():
    assert run_of() is None
    assert trackers.trainer_arguments(None) == {"report_to": "none", "logging_strategy": "no"}


def test_a_round_runs_under_its_strategy_replicate_and_round(tmp_path):
    run = run_of("tracking.report_to=[tensorboard, wandb]")
    assert run.name == "premem/seed-1/round-2" and run.folder == Path("/store/tracking/premem/seed-1/round-2")
    assert run_of("tracking.report_to=[tensorboard]", f"tracking.dir={tmp_path}").folder == tmp_path / run.name
    assert trackers.trainer_arguments(run) == {"report_to": ["tensorboard", "wandb"], "run_name": run.name,
                                               "logging_strategy": "steps", "logging_steps": 10}


def test_figures_are_the_ones_measured():
    assert trackers.round_figures(INFO) == FIGURES
    assert set(trackers.round_figures({"accuracy": 0.5, "n_examples": 8})) == {"loop/test_accuracy", "loop/n_examples"}


def test_a_missing_package_is_named_before_training(monkeypatch):
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="tracking.report_to names 'mlflow'.*pip install mlflow"):
        trackers.check_available(build_config("smoke", overrides=["tracking.report_to=[mlflow]"]))


def test_wandb_gets_the_figures_in_the_rounds_run_which_is_then_finished(monkeypatch):
    calls = []
    fake = types.SimpleNamespace(run=object(), log=lambda d: calls.append(("log", d)),
                                 finish=lambda: calls.append(("finish",)), init=lambda **kw: calls.append(("init", kw)))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    trackers.log_round(run_of("tracking.report_to=[wandb]"), INFO)
    assert calls == [("log", {**FIGURES, "loop/round": 2}), ("finish",)]  # no init: trl's run was still open


def test_mlflow_gets_the_figures_in_the_run_training_opened(monkeypatch):
    logged = []
    client = types.SimpleNamespace(log_metric=lambda run_id, key, value, step: logged.append((run_id, key, value, step)))
    monkeypatch.setitem(sys.modules, "mlflow", types.SimpleNamespace(MlflowClient=lambda: client))
    run = run_of("tracking.report_to=[mlflow]")
    run.ids["mlflow"] = "abc"  # what _run_ids saw while training
    trackers.log_round(run, INFO)
    assert logged == [("abc", key, value, 2) for key, value in FIGURES.items()]


ACCURACY = [{"epoch": 2, "split": "dev", "accuracy": 0.5, "n_questions": 4, "n_samples": 4},
            {"epoch": 1, "split": "dev", "accuracy": 0.25, "n_questions": 4, "n_samples": 4},
            {"epoch": 1, "split": "test", "accuracy": 0.125, "n_questions": 8, "n_samples": 8},
            {"epoch": 2, "split": "test", "accuracy": 0.375, "n_questions": 8, "n_samples": 8}]


def test_a_sweep_run_logs_each_splits_accuracy_at_every_checkpoint(monkeypatch):
    run = trackers.sweep_run(build_config("analyze-default", overrides=["tracking.report_to=[wandb, mlflow]"]),
                             Path("/store/tracking"), 3, 1)
    assert run.name == "analysis/seed-3/run-1" and run.folder == Path("/store/tracking/analysis/seed-3/run-1")
    assert trackers.sweep_run(build_config("analyze-default"), Path("/t"), 3, 1) is None
    assert trackers.checkpoint_figures(ACCURACY) == [(1, {"loop/dev_accuracy": 0.25, "loop/test_accuracy": 0.125}),
                                                     (2, {"loop/dev_accuracy": 0.5, "loop/test_accuracy": 0.375})]
    calls, logged = [], []
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(
        run=object(), log=lambda d: calls.append(("log", d)), finish=lambda: calls.append(("finish",))))
    client = types.SimpleNamespace(log_metric=lambda run_id, key, value, step: logged.append((key, value, step)))
    monkeypatch.setitem(sys.modules, "mlflow", types.SimpleNamespace(MlflowClient=lambda: client))
    run.ids["mlflow"] = "abc"
    trackers.log_checkpoints(run, ACCURACY)
    assert calls == [("log", {"loop/dev_accuracy": 0.25, "loop/test_accuracy": 0.125, "loop/epoch": 1}),
                     ("log", {"loop/dev_accuracy": 0.5, "loop/test_accuracy": 0.375, "loop/epoch": 2}), ("finish",)]
    assert logged == [("loop/dev_accuracy", 0.25, 1), ("loop/test_accuracy", 0.125, 1),
                      ("loop/dev_accuracy", 0.5, 2), ("loop/test_accuracy", 0.375, 2)]
