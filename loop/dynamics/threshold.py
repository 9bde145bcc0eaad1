"""Every rule of the memorization threshold tau in one place: the configured one (`tau_base` + the config's shift,
`tau_for`), the one round 0 calibrates on dev (`calibrate_round`, over `loop.dynamics.calibration`), what it records
of that calibration, and flagging a ledger under it.

tau is one shift on each example's base: tau_i = base_i + shift. With `dynamics.tau_mode: absolute` there is no
base and the shift is tau itself; with `style_floor` the base is log(style_floor_i) and the shift log floor_scale."""

from __future__ import annotations

import numpy as np
import polars as pl

from loop.config import RunConfig
from loop.dynamics.calibration import Calibration, calibrate, grid
from loop.dynamics.ledger import memorized_flags


def tau_base(cfg: RunConfig, examples: pl.DataFrame) -> pl.DataFrame | None:
    """Each example's threshold before the configured shift: None (absolute mode: tau is the shift itself), or
    `example_id`, `tau` = log(style_floor) (style_floor mode: the shift is log floor_scale)."""
    if cfg.dynamics.tau_mode == "absolute":
        return None
    return examples.select(pl.col("id").alias("example_id"), pl.col("style_floor").log().alias("tau"))


def tau_for(cfg: RunConfig, examples: pl.DataFrame, shift: float | None = None):
    """The memorization threshold: one float, or per example log(floor_scale * style_floor).

    `shift` is a calibrated threshold (`loop.dynamics.calibration`: tau, or log floor_scale); it is required
    where the config says auto and replaces the configured value where given.
    """
    if shift is None:
        shift = cfg.dynamics.fixed_shift
        if shift is None:
            raise ValueError("dynamics threshold is auto: it must be calibrated on the dev split before it is read")
    base = tau_base(cfg, examples)
    if base is None:
        return float(shift)
    return base.with_columns(pl.col("tau") + shift)


def calibrate_round(cfg: RunConfig, ledger: pl.DataFrame, checkpoint_accuracy: pl.DataFrame,
                    examples: pl.DataFrame) -> Calibration:
    """The threshold whose pre-memorization accuracy best predicts dev accuracy over round 0's checkpoints
    (`checkpoint_accuracy`: the tracker's per-checkpoint accuracy of its held-out splits)."""
    g = cfg.dynamics.shift_grid()
    dev = checkpoint_accuracy.filter(pl.col("split") == "dev").with_columns(run=pl.lit("round-0"))
    return calibrate(ledger.with_columns(run=pl.lit("round-0")), dev, tau_base(cfg, examples),
                     grid(g.low, g.high, g.step))


def calibration_record(cfg: RunConfig, calibration: Calibration) -> dict:
    """What round 0 chose, in the config's own terms (tau, or floor_scale), for step.json and the report."""
    absolute = cfg.dynamics.tau_mode == "absolute"
    name, value = ("tau", calibration.shift) if absolute else ("floor_scale", float(np.exp(calibration.shift)))
    return {"parameter": name, "value": value, "shift": calibration.shift, "plateau": list(calibration.plateau),
            "r2_dev": calibration.r2_dev, "checkpoints": int(calibration.curve["n_points"].max())}


def flag_memorized(ledger: pl.DataFrame, tau) -> pl.DataFrame:
    """The ledger with its memorized flags under `tau` (an empty ledger as it is)."""
    return memorized_flags(ledger, tau) if ledger.height else ledger
