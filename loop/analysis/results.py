"""The analysis's numbers from a run store's sweep: tau calibrated on dev, the (run, checkpoint) points, R^2 of
test accuracy against pre-memorization accuracy and the other predictors, and the robustness bins.

Example ids are prefixed by their replicate (`S/id`): replicates draw their own data, so one id may name
different problems (and phrasing floors) in two replicates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from loop.dynamics.calibration import (RUN_KEY, calibrate, grid, premem_points, r2_against, shifted_tau,
                                      threshold_points)
from loop.metrics.prediction import bootstrap_over_runs, fit_line, pearson, r2_fit, r2_identity
from loop.metrics.robustness import robustness_bins
from loop.config import RunConfig
from loop.dynamics.ledger import premem_by_checkpoint
from loop.dynamics.threshold import tau_base
from loop.store import layout


class SweepTables:
    """Every finished run of the sweep in one run store, as pooled tables."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.cfg = RunConfig.model_validate(yaml.safe_load((self.root / layout.CONFIG).read_text()))
        folders = sorted(self.root.glob(layout.ANALYSIS_RECORDS))
        if not folders:
            raise FileNotFoundError(f"{self.root} holds no finished analysis run (curation-loop analyze writes them)")
        self.runs = pl.DataFrame([json.loads(p.read_text()) for p in folders]).sort("seed", "index")
        self.ledger = self._pooled(folders, "ledger")
        self.accuracy = self._pooled(folders, "accuracy", ids=False)
        robustness = [p.parent / layout.table_file("robustness") for p in folders
                      if (p.parent / layout.table_file("robustness")).exists()]
        self.robustness = pl.concat([self._prefixed(pl.read_parquet(f), f.parent) for f in robustness]) \
            if robustness else None
        # One robustness run per replicate; their examples are pooled into the bins.
        self.robust_keys = sorted(self.robustness["run"].unique().to_list()) if self.robustness is not None else []
        bases = []
        for path in sorted(self.root.glob(layout.EXAMPLE_FILES)):
            seed = str(layout.replicate_seed(path))
            examples = pl.read_parquet(path).filter(pl.col("split") == "seed")
            base = tau_base(self.cfg, examples)
            if base is not None:
                bases.append(base.with_columns((pl.lit(seed + "/") + pl.col("example_id")).alias("example_id")))
        self.base = pl.concat(bases) if bases else None

    def _pooled(self, folders, name: str, ids: bool = True) -> pl.DataFrame:
        frames = [pl.read_parquet(p.parent / layout.table_file(name)) for p in folders]
        frames = [self._prefixed(f, p.parent) if ids else f for f, p in zip(frames, folders)]
        return pl.concat(frames, how="diagonal_relaxed")

    @staticmethod
    def _prefixed(frame: pl.DataFrame, folder: Path) -> pl.DataFrame:
        seed = str(layout.replicate_seed(folder))
        return frame.with_columns((pl.lit(seed + "/") + pl.col("example_id")).alias("example_id"))

    def split_accuracy(self, split: str) -> pl.DataFrame:
        return self.accuracy.filter(pl.col("split") == split).select(RUN_KEY, "epoch", "split", "accuracy")


def analysis_results(tables: SweepTables) -> dict:
    """Calibration, generalization prediction and robustness for a sweep's tables (JSON-ready but for NaN)."""
    cfg = tables.cfg
    dyn = cfg.dynamics
    g = dyn.shift_grid()
    shifts = grid(g.low, g.high, g.step)
    dev = tables.split_accuracy("dev")
    test = tables.split_accuracy("test")
    # PreMem at every candidate shift, once: calibration reads it against dev (only), the report's curve on test.
    at_shift = threshold_points(tables.ledger, tables.base, shifts) if dev.height or test.height else {}
    calibration = calibrate(tables.ledger, dev, tables.base, shifts, at_shift) if dev.height else None
    used = calibration.shift if dyn.auto_tau else dyn.fixed_shift
    if used is None:
        raise ValueError("dynamics threshold is auto but the sweep recorded no dev accuracy to calibrate it on")
    points = _points(tables, used, test, dev)
    return {
        "shift": used,
        "tau": _tau_block(cfg, calibration, used, test, shifts, at_shift),
        "generalization": _generalization(points, cfg.analysis.n_boot),
        "robustness": _robustness(tables, used, cfg),
        "runs": tables.runs.to_dicts(),
    }


def _points(tables: SweepTables, shift: float, test: pl.DataFrame, dev: pl.DataFrame) -> pl.DataFrame:
    """One row per (run, checkpoint): premem, train_accuracy, train_accuracy_first, memorized, test/dev accuracy."""
    points = premem_points(tables.ledger, tables.base, shift)
    first = points.sort("epoch").group_by(RUN_KEY).agg(train_accuracy_first=pl.col("train_accuracy").first())
    labels = tables.runs.select(pl.col("key").alias(RUN_KEY), "label", "learning_rate", "epochs", "fraction",
                                pl.col("seed").alias("replicate"))
    for name, frame in (("test_accuracy", test), ("dev_accuracy", dev)):
        points = points.join(frame.select(RUN_KEY, "epoch", pl.col("accuracy").alias(name)), on=[RUN_KEY, "epoch"],
                             how="left")
    return points.join(first, on=RUN_KEY).join(labels, on=RUN_KEY).rename({"epoch": "checkpoint"}).sort(
        "replicate", RUN_KEY, "checkpoint")


def _tau_block(cfg: RunConfig, calibration, used: float, test: pl.DataFrame, shifts,
               at_shift: dict[float, pl.DataFrame]) -> dict:
    absolute = cfg.dynamics.tau_mode == "absolute"

    def value(shift):  # the shift in the config's own terms
        return None if shift is None else (shift if absolute else float(math.exp(shift)))

    block = {"parameter": "tau" if absolute else "floor_scale", "mode": cfg.dynamics.tau_mode,
             "auto": cfg.dynamics.auto_tau, "used": value(used), "configured": value(cfg.dynamics.fixed_shift),
             "calibrated": None, "plateau": None, "r2_dev": None, "curve": []}
    if calibration is None:
        return block
    # For information only: the same curve on test. It never feeds the choice above.
    test_curve = {round(s, 10): r2_against(at_shift[float(s)], test)[0] for s in shifts} if test.height else {}
    block |= {"calibrated": value(calibration.shift), "plateau": [value(v) for v in calibration.plateau],
              "r2_dev": calibration.r2_dev,
              "curve": [{"shift": r["shift"], "value": value(r["shift"]), "r2_dev": r["r2"], "mse_dev": r["mse"],
                         "r2_test": test_curve.get(round(r["shift"], 10))}
                        for r in calibration.curve.iter_rows(named=True)]}
    return block


def _stat(statistic, x, y, runs, n_boot: int, seed: int) -> dict:
    b = bootstrap_over_runs(statistic, x, y, runs, n_boot=n_boot, seed=seed)
    return {"value": b.value, "ci_low": b.ci_low, "ci_high": b.ci_high, "n_runs": b.n_runs, "n_points": b.n_points}


def _generalization(points: pl.DataFrame, n_boot: int) -> dict:
    usable = points.drop_nulls(["premem", "train_accuracy", "test_accuracy"])
    out: dict = {"n_points": usable.height, "n_runs": usable[RUN_KEY].n_unique(),
                 "points": points.to_dicts()}
    if usable.height < 2:
        return out
    runs = usable[RUN_KEY].to_numpy()
    test = usable["test_accuracy"].to_numpy()
    predictors = {"premem": usable["premem"].to_numpy(), "train_acc": usable["train_accuracy"].to_numpy(),
                  "train_acc_first_epoch": usable["train_accuracy_first"].to_numpy()}
    for k, (name, x) in enumerate(predictors.items()):
        suffix = "" if name == "premem" else f"_{name}"
        out[f"r2_identity{suffix}"] = _stat(r2_identity, x, test, runs, n_boot, seed=2 * k)
        out[f"r2_fit{suffix}"] = _stat(r2_fit, x, test, runs, n_boot, seed=2 * k + 1)
        line = fit_line(x, test)
        out[f"line{suffix}"] = {"slope": line.slope, "intercept": line.intercept}
    out["r2_train_acc"] = out["r2_identity_train_acc"]  # the summary.json name the issue uses
    gap = predictors["train_acc"] - test
    gap_predictor = predictors["train_acc"] - predictors["premem"]
    out["gap"] = {"target": "train accuracy - test accuracy", "predictor": "train accuracy - pre-memorization accuracy",
                  "pearson": _stat(pearson, gap_predictor, gap, runs, n_boot, seed=11),
                  "r2_identity": _stat(r2_identity, gap_predictor, gap, runs, n_boot, seed=12),
                  "r2_fit": _stat(r2_fit, gap_predictor, gap, runs, n_boot, seed=13)}
    return out


def _robustness(tables: SweepTables, shift: float, cfg: RunConfig) -> dict | None:
    if tables.robustness is None:
        return None
    keys = tables.robust_keys
    ledger = tables.ledger.filter(pl.col(RUN_KEY).is_in(keys))
    per_checkpoint = premem_by_checkpoint(ledger, shifted_tau(tables.base, shift), by=(RUN_KEY,))
    last = per_checkpoint.filter(pl.col("epoch") == pl.col("epoch").max().over(RUN_KEY))
    rows = [last.select("example_id", "premem", condition=pl.lit("unperturbed"), accuracy=pl.col("accuracy"))]
    perturbed = tables.robustness.with_columns(accuracy=pl.col("n_correct") / pl.col("n_samples"))
    rows.append(perturbed.join(last.select("example_id", "premem"), on="example_id", how="inner").select(
        "example_id", "premem", pl.col("prefix").alias("condition"), "accuracy"))
    frame = pl.concat(rows)
    label = tables.runs.filter(pl.col("key") == keys[0])["label"][0]
    return {"runs": keys, "label": label, "prefixes": cfg.analysis.robustness.prefixes,
            "edges": cfg.analysis.robustness.bins, "n_examples": last.height,
            "bins": robustness_bins(frame, cfg.analysis.robustness.bins, n_boot=cfg.analysis.n_boot)}


def heatmap_data(tables: SweepTables, shift: float, run_key: str | None = None) -> dict | None:
    """Per-example dynamics of one run (default: the robustness run) for the heat map, at threshold shift `shift`:
    examples sorted by the checkpoint they were first memorized at (never memorized last, then by accuracy), with
    sample accuracy and the memorized flag per checkpoint (rows: examples, columns: checkpoints)."""
    key = run_key or (tables.robust_keys or tables.runs["key"].to_list())[0]
    ledger = tables.ledger.filter(pl.col(RUN_KEY) == key)
    if not ledger.height:
        return None
    rows = premem_by_checkpoint(ledger, shifted_tau(tables.base, shift))
    epochs = sorted(rows["epoch"].unique().to_list())
    first = rows.group_by("example_id").agg(
        first=pl.col("epoch").filter(pl.col("memorized")).min().cast(pl.Float64).fill_null(math.inf),
        mean_acc=pl.col("accuracy").mean())
    order = first.sort(["first", "mean_acc", "example_id"], descending=[False, True, False])["example_id"]

    def wide(column: str) -> np.ndarray:
        table = rows.with_columns(pl.col(column).cast(pl.Float64)).pivot(
            on="epoch", index="example_id", values=column, sort_columns=True)
        table = pl.DataFrame({"example_id": order}).join(table, on="example_id", how="left")
        return table.select([str(e) for e in epochs]).to_numpy().astype(float)

    label = tables.runs.filter(pl.col("key") == key)["label"][0]
    return {"run": key, "label": label, "epochs": epochs, "examples": order.to_list(),
            "accuracy": wide("accuracy"), "memorized": wide("memorized")}
