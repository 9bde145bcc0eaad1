"""The memorization threshold tau, chosen on a dev split held out of training: never on the test set.

For every candidate threshold the dataset-level pre-memorization accuracy PreMem_j of each (run, checkpoint) is
computed from the training ledgers, and scored by how well it predicts the dev accuracy of the same checkpoint on
the identity line (`r2_identity`, the paper's form). The chosen threshold minimises the mean squared error
mean_j (dev_j - PreMem_j)^2, which is maximising the dev R^2 (its denominator does not depend on the threshold) and
stays defined where R^2 is not (dev accuracies that do not vary, one checkpoint). The function takes dev rows only
and refuses any other split, so the test set cannot reach it.

The threshold is one shift `delta` on each example's base threshold: tau_i = base_i + delta. With
`dynamics.tau_mode: absolute` the base is 0 and delta is tau itself; with `style_floor` the base is log(floor_i)
and delta = log(floor_scale).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import polars as pl

from loop.metrics.prediction import r2_identity
from loop.dynamics.ledger import checkpoint_summary

RUN_KEY = "run"


class Calibration(NamedTuple):
    """The chosen shift, the range of shifts that tie with it, and the dev R^2 of every candidate."""

    shift: float
    plateau: tuple[float, float]
    r2_dev: float
    curve: pl.DataFrame  # shift, r2 (dev R^2 on the identity line), mse, n_points


def shifted_tau(base: pl.DataFrame | None, shift: float):
    """tau_i = base_i + shift: one float without a base, else a per-example frame (`example_id`, `tau`)."""
    if base is None:
        return float(shift)
    return base.select("example_id", (pl.col("tau") + shift).alias("tau"))


def premem_points(ledger: pl.DataFrame, base: pl.DataFrame | None, shift: float) -> pl.DataFrame:
    """PreMem_j and train accuracy of every (run, checkpoint) at threshold base + shift."""
    return checkpoint_summary(ledger, shifted_tau(base, shift), by=(RUN_KEY,))


def r2_against(points: pl.DataFrame, accuracy: pl.DataFrame) -> tuple[float, float, int]:
    """Identity-line R^2 and mean squared error of `accuracy` (run, epoch, accuracy) against the points' PreMem,
    over the checkpoints both have; (R^2, MSE, number of points)."""
    joined = points.join(accuracy.select(RUN_KEY, "epoch", "accuracy"), on=[RUN_KEY, "epoch"], how="inner")
    joined = joined.drop_nulls(["premem", "accuracy"])
    if joined.height == 0:
        return math.nan, math.nan, 0
    x, y = joined["premem"].to_numpy(), joined["accuracy"].to_numpy()
    return r2_identity(x, y), float(np.mean((y - x) ** 2)), joined.height


def threshold_points(ledger: pl.DataFrame, base: pl.DataFrame | None, shifts) -> dict[float, pl.DataFrame]:
    """`premem_points` at every shift, computed once for the curves on dev and on test."""
    return {float(s): premem_points(ledger, base, float(s)) for s in shifts}


def threshold_curve(ledger: pl.DataFrame, accuracy: pl.DataFrame, base: pl.DataFrame | None,
                    shifts, points: dict[float, pl.DataFrame] | None = None) -> pl.DataFrame:
    """R^2 and MSE of `accuracy` against PreMem at every shift: columns shift, r2, mse, n_points (`points`: the
    shifts' PreMem points where already computed)."""
    rows = []
    for shift in shifts:
        at = points[float(shift)] if points is not None else premem_points(ledger, base, float(shift))
        r2, mse, n = r2_against(at, accuracy)
        rows.append({"shift": float(shift), "r2": r2, "mse": mse, "n_points": n})
    return pl.DataFrame(rows, schema={"shift": pl.Float64, "r2": pl.Float64, "mse": pl.Float64, "n_points": pl.Int64})


def calibrate(ledger: pl.DataFrame, dev: pl.DataFrame, base: pl.DataFrame | None, shifts,
              points: dict[float, pl.DataFrame] | None = None) -> Calibration:
    """The shift whose PreMem best predicts dev accuracy on y = x (least squared error, highest dev R^2).

    `ledger`: training ledgers with a `run` column; `dev`: run, epoch, accuracy and, if present, `split`, which
    must be "dev" on every row. Where several shifts tie for the least error (PreMem changes only where a threshold
    crosses a ledger NLL), the middle one of the tied ones is taken, away from either edge.
    """
    if not len(shifts):
        raise ValueError("tau calibration needs at least one candidate threshold")
    if "split" in dev.columns:
        other = dev.filter(pl.col("split") != "dev")
        if other.height:
            raise ValueError(f"tau calibration reads dev rows only; got {other.height} rows of split(s) "
                             f"{sorted(other['split'].unique().to_list())}")
    if dev.height == 0:
        raise ValueError("tau calibration needs dev accuracies (a dev split: data.n_dev or data.splits.dev)")
    curve = threshold_curve(ledger, dev, base, shifts, points)
    finite = curve.filter(pl.col("mse").is_finite())
    if finite.height == 0:
        raise ValueError("no threshold can be scored: no dev accuracy shares a checkpoint with a complete ledger")
    best = float(finite["mse"].min())
    tied = finite.filter(pl.col("mse") <= best + 1e-12)
    chosen = tied.row((tied.height - 1) // 2, named=True)
    return Calibration(float(chosen["shift"]), (float(tied["shift"].min()), float(tied["shift"].max())),
                       chosen["r2"], curve)


def grid(low: float, high: float, step: float) -> np.ndarray:
    """Candidate shifts low, low + step, ..., high (inclusive, rounded to the step's decimals)."""
    if step <= 0 or high < low:
        raise ValueError(f"a tau grid needs low <= high and step > 0, got {low}, {high}, {step}")
    n = int(math.floor((high - low) / step + 1e-9)) + 1
    return np.round(low + step * np.arange(n), 10)
