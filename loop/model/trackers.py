"""Experiment trackers (config section `tracking`): each round's training logs and the loop's per-round figures.

A round of the plan is one tracker run, named STRATEGY/seed-S/round-R (`loop.store.layout.tracking_run`). Its
training logs come from trl/transformers' own callbacks, which `tracking.report_to` is handed to unchanged
(`trainer_arguments`); the loop's figures of the round (test and dev accuracy, pre-memorization accuracy, memorized
share, examples) are written through each tracker's own API once the step is committed (`log_round`), at step = the
round. A run of the paper's analysis sweep is one tracker run too, analysis/seed-S/run-K (`sweep_run`): its training
logs, and each held-out split's accuracy at every checkpoint once the run is committed (`log_checkpoints`), at
step = the epoch.

Trackers only watch: nothing here reads a random generator or feeds back into training, selection or evaluation,
so a run gives the same results with or without them. Each tracker's package is imported only when it is named.
It sits on the model floor, beside the training it hooks into (`loop.model.training`); the run's stages hand a
round's tracker run to training and log its figures after the commit (`loop.run.stages`), and preparation checks
the packages first (`loop.run.prepare`).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop.config import RunConfig
from loop.store import layout

log = logging.getLogger(__name__)

# The package each tracker needs; TensorBoard's writer is torch's (which needs the tensorboard package) or
# tensorboardX's, as transformers' TensorBoardCallback accepts either.
PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}

# step.json keys of the loop's per-round figures -> the name each is logged under (prefix loop/).
FIGURES = {"accuracy": "test_accuracy", "dev_accuracy": "dev_accuracy", "premem_mean": "premem_accuracy",
           "memorized_last_epoch": "memorized_share", "n_examples": "n_examples"}


@dataclass(frozen=True)
class TrackerRun:
    """One round's run in the trackers of `report_to`."""

    report_to: tuple[str, ...]
    name: str  # STRATEGY/seed-S/round-R
    folder: Path  # where TensorBoard writes this run's event files
    round: int
    logging_steps: int
    ids: dict[str, str] = field(default_factory=dict)  # run ids trl's callbacks opened (mlflow), for log_round


def round_run(cfg: RunConfig, default_dir: Path, strategy: str, seed: int, round_: int) -> TrackerRun | None:
    """The tracker run of a round, or None when `tracking.report_to` names no tracker. `default_dir`: where offline
    trackers write when tracking.dir is not set (the run store's tracking/ folder)."""
    return _tracker_run(cfg, default_dir, layout.tracking_run(strategy, seed, round_), round_)


def sweep_run(cfg: RunConfig, default_dir: Path, seed: int, index: int) -> TrackerRun | None:
    """The tracker run of the analysis sweep's run `index` of replicate `seed` (None without trackers), named as the
    run's folder in the store."""
    return _tracker_run(cfg, default_dir, layout.analysis_run_dir(seed, index), index)


def _tracker_run(cfg: RunConfig, default_dir: Path, name: str, step: int) -> TrackerRun | None:
    tracking = cfg.tracking
    if not tracking.report_to:
        return None
    base = Path(tracking.dir) if tracking.dir else default_dir
    return TrackerRun(tuple(tracking.report_to), name, base / name, step, tracking.logging_steps)


def check_available(cfg: RunConfig) -> None:
    """Stop before any training when a named tracker's package is missing (else the first round would fail)."""
    for name in cfg.tracking.report_to:
        if not any(importlib.util.find_spec(pkg) for pkg in PACKAGES[name]):
            raise ValueError(f"tracking.report_to names {name!r} but the {PACKAGES[name][0]} package is not "
                             f"installed: pip install {PACKAGES[name][0]}, or remove it from tracking.report_to")


# -- training: trl's own callbacks ----------------------------------------------------------------
def trainer_arguments(run: TrackerRun | None) -> dict[str, Any]:
    """SFTConfig arguments: no tracker and no logging without a run (the loop's tables hold what it needs)."""
    if run is None:
        return {"report_to": "none", "logging_strategy": "no"}
    return {"report_to": list(run.report_to), "run_name": run.name, "logging_strategy": "steps",
            "logging_steps": run.logging_steps}


def start_round(run: TrackerRun | None) -> None:
    """Before a round trains. A round is trained again only when an earlier attempt never committed (killed,
    failed), so the event files that attempt left would repeat its steps beside this one's: they go. A W&B run left
    open by a step that failed before `log_round` is finished, so this round does not log into it."""
    if run is None:
        return
    if "tensorboard" in run.report_to:
        shutil.rmtree(run.folder, ignore_errors=True)
    if "wandb" in run.report_to:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _run_ids(run: TrackerRun):
    """A callback that keeps the id of the MLflow run transformers' MLflowCallback opened (it ends it with the
    training), so that `log_round` writes the round's figures into that same run. transformers (and torch with it) is
    imported here, where a round trains, so that this module imports without them (the unit tests)."""
    from transformers import TrainerCallback

    class RunIds(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if "mlflow" in run.report_to:
                import mlflow

                active = mlflow.active_run()
                if active is not None:
                    run.ids["mlflow"] = active.info.run_id

    return RunIds()


def attach(trainer, run: TrackerRun | None) -> None:
    """Point the trainer's tracker callbacks at this round's run. transformers 5 writes TensorBoard events under
    the output_dir, a temporary folder here, so its callback is given a writer on the run's folder instead."""
    if run is None:
        return
    trainer.add_callback(_run_ids(run))
    if "tensorboard" in run.report_to:
        from transformers.integrations import TensorBoardCallback

        trainer.remove_callback(TensorBoardCallback)
        trainer.add_callback(TensorBoardCallback(tb_writer=_summary_writer(run.folder)))


def _summary_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer needs the tensorboard package; tensorboardX brings its own
        from tensorboardX import SummaryWriter
    folder.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(folder))


# -- the loop's figures ---------------------------------------------------------------------------
def round_figures(info: dict) -> dict[str, float]:
    """The loop's figures of a committed round from its step.json record (dev accuracy only where measured,
    pre-memorization accuracy only where every example was sampled)."""
    return {f"loop/{name}": float(info[key]) for key, name in FIGURES.items() if info.get(key) is not None}


def checkpoint_figures(accuracy_rows: list[dict]) -> list[tuple[int, dict[str, float]]]:
    """Per checkpoint (epoch, in order), each held-out split's accuracy, from the rows of
    `DynamicsTracker.checkpoint_accuracy` (epoch, split, accuracy, ...)."""
    by_epoch: dict[int, dict[str, float]] = {}
    for row in accuracy_rows:
        by_epoch.setdefault(int(row["epoch"]), {})[f"loop/{row['split']}_accuracy"] = float(row["accuracy"])
    return sorted(by_epoch.items())


def log_round(run: TrackerRun | None, info: dict) -> None:
    """Write a committed round's figures to every tracker of `run`, at step = the round."""
    if run is not None:
        _log(run, [(run.round, round_figures(info))], axis="round")


def log_checkpoints(run: TrackerRun | None, accuracy_rows: list[dict]) -> None:
    """Write a committed sweep run's held-out accuracy at every checkpoint to every tracker of `run`, at step = the
    epoch."""
    _log(run, checkpoint_figures(accuracy_rows), axis="epoch")


def _log(run: TrackerRun | None, rows: list[tuple[int, dict[str, float]]], *, axis: str) -> None:
    """`rows`: (step, figures) in step order; `axis` names what the step counts (W&B logs it as loop/AXIS)."""
    if run is None:
        return
    for name in run.report_to:
        _WRITERS[name](run, rows, axis)


def _to_tensorboard(run: TrackerRun, rows: list[tuple[int, dict[str, float]]], axis: str) -> None:
    writer = _summary_writer(run.folder)  # a second event file beside trl's: TensorBoard reads them all
    try:
        for step, figures in rows:
            for key, value in figures.items():
                writer.add_scalar(key, value, global_step=step)
    finally:
        writer.close()


def _to_wandb(run: TrackerRun, rows: list[tuple[int, dict[str, float]]], axis: str) -> None:
    import wandb

    # transformers leaves the round's W&B run open after training: the figures join it, then it is finished so
    # that the next round's training opens a run of its own.
    if wandb.run is None:
        wandb.init(name=run.name)
    for step, figures in rows:
        wandb.log({**figures, f"loop/{axis}": step})
    wandb.finish()


def _to_mlflow(run: TrackerRun, rows: list[tuple[int, dict[str, float]]], axis: str) -> None:
    import mlflow

    run_id = run.ids.get("mlflow")
    if run_id is None:  # no run was open while training (MLflowCallback off or failed): one of the same name
        with mlflow.start_run(run_name=run.name) as started:
            run_id = started.info.run_id
    client = mlflow.MlflowClient()
    for step, figures in rows:
        for key, value in figures.items():
            client.log_metric(run_id, key, value, step=step)


_WRITERS = {"tensorboard": _to_tensorboard, "wandb": _to_wandb, "mlflow": _to_mlflow}
