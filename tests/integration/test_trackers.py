"""Experiment trackers, offline: a tiny run with tracking.report_to=[tensorboard] writes trl's training loss and the
loop's per-round figures under each round's run name (STRATEGY/seed-S/round-R), the figures equal to the run store's
tables; tracking changes no selection, and a round trained again after an interrupted attempt replaces its events."""

import json
import math
import shutil

import numpy as np
import polars as pl
import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from loop.config import build_config  # noqa: E402
from loop.run.engine import Engine  # noqa: E402
from loop.store import layout  # noqa: E402

pytestmark = pytest.mark.integration
TRACKED = ["tracking.report_to=[tensorboard]", "tracking.logging_steps=1"]


def run(model_dir, out, *extra):
    cfg = build_config("smoke", overrides=[
        f"model.name_or_path={model_dir}", f"out_dir={out}", "seeds=[0]", "data.n_seeds=8", "data.pool_per_seed=2",
        "data.n_test=8", "selection.budgets=[4]", "selection.iid_extra_budgets=[]", "selection.strategies=[premem]",
        "sampling.max_new_tokens=16", *extra])
    Engine(cfg).run_all(progress=False)


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in `folder`, tag -> [(step, value)]."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def rounds(out) -> dict[str, dict]:
    """Tracker run name -> step.json of every committed step."""
    found = {}
    for record in sorted(out.glob(layout.STEP_RECORDS)):
        info = json.loads(record.read_text())
        found[layout.tracking_run(info["strategy"], info["seed"], info["round"])] = info
    return found


def step_table(out, info: dict, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / layout.step_dir(info["seed"], info["strategy"], info["round"])
                           / layout.table_file(name))


def selections(out) -> dict[str, list[str]]:
    return {str(p.relative_to(out)): pl.read_parquet(p)["id"].to_list()
            for p in sorted(out.glob(layout.step_tables(layout.SELECTED)))}


def test_tensorboard_holds_training_logs_and_the_round_figures(tiny_model_dir, tmp_path):
    out = tmp_path / "tracked"
    run(tiny_model_dir, out, *TRACKED)
    tracking = out / layout.TRACKING
    infos = rounds(out)
    assert set(infos) == {"shared/seed-0/round-0", "random/seed-0/round-1", "premem/seed-0/round-1"}
    runs = {str(p.parent.relative_to(tracking)) for p in tracking.rglob("events.out.tfevents.*")}
    assert runs == set(infos)
    for name, info in infos.items():
        logged = scalars(tracking / name)
        loss = logged["train/loss"]
        assert [s for s, _ in loss] == list(range(1, len(loss) + 1)) and all(math.isfinite(v) for _, v in loss)
        evals = step_table(out, info, layout.EVAL)
        expected = {"loop/test_accuracy": evals["accuracy"][0], "loop/n_examples": evals["n_examples"][0],
                    "loop/premem_accuracy": info["premem_mean"], "loop/memorized_share": info["memorized_last_epoch"]}
        for tag, value in expected.items():  # TensorBoard keeps float32
            assert logged[tag] == [(info["round"], float(np.float32(value)))], tag
        assert "loop/dev_accuracy" not in logged  # no strategy here measures dev

    # Tracking only watches: an untracked run selects and scores the same.
    plain = tmp_path / "plain"
    run(tiny_model_dir, plain)
    assert selections(plain) == selections(out) and not (plain / layout.TRACKING).exists()
    for info in infos.values():
        assert step_table(plain, info, layout.EVAL).equals(step_table(out, info, layout.EVAL))

    # A resume over the existing event folders: finished rounds are left as they are; a round whose attempt never
    # committed (its step folder gone, its event files kept) trains again into a cleared folder.
    before = {p: p.stat().st_mtime_ns for p in (tracking / "shared").rglob("*")}
    shutil.rmtree(out / layout.step_dir(0, "premem", 1))
    run(tiny_model_dir, out, *TRACKED)
    assert {p: p.stat().st_mtime_ns for p in (tracking / "shared").rglob("*")} == before
    assert selections(out) == selections(plain)
    again_dir = tracking / layout.tracking_run("premem", 0, 1)
    again = scalars(again_dir)
    assert [s for s, _ in again["train/loss"]] == list(range(1, len(again["train/loss"]) + 1))  # one series, not two
    assert len(list(again_dir.glob("events.out.tfevents.*"))) == 2  # trl's, ours


def test_an_analysis_sweep_run_holds_its_training_logs_and_held_out_accuracy_per_checkpoint(tiny_model_dir, tmp_path):
    from loop.analysis.sweep import Sweep, plan_runs, run_dir

    cfg = build_config("analyze-default", overrides=[
        f"model.name_or_path={tiny_model_dir}", f"out_dir={tmp_path}", "data.n_seeds=4", "data.n_dev=4",
        "data.n_test=4", "dynamics.n_samples=1", "sampling.max_new_tokens=16", "train.batch_size=4",
        "torch_threads=1", "analysis.runs=[{learning_rate: 1.0e-3, epochs: 2}]",
        "analysis.robustness={prefixes: [], run: 0}",
        *TRACKED])
    Sweep(cfg).run_all(progress=False)
    (run,) = [r for r in plan_runs(cfg) if r.seed == cfg.seeds[0]]
    logged = scalars(tmp_path / layout.TRACKING / layout.analysis_run_dir(run.seed, run.index))
    assert all(math.isfinite(v) for _, v in logged["train/loss"])
    accuracy = pl.read_parquet(run_dir(tmp_path, run) / "accuracy.parquet").sort("epoch")
    for split in ("dev", "test"):
        rows = accuracy.filter(pl.col("split") == split)
        assert logged[f"loop/{split}_accuracy"] == [(e, float(np.float32(a))) for e, a in rows.select(
            "epoch", "accuracy").rows()]
