"""Per-example robustness (paper section 4): does a training example's answer survive a forced answer prefix?

At a run's last checkpoint each training question is sampled again with the answer forced to begin with a prefix
("First", "We know that"); examples are binned by pre-memorization accuracy and each bin's mean sample accuracy is
compared, perturbed against unperturbed. Low pre-memorization accuracy flagging brittle answers is the claim.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def bin_index(values, edges=EDGES) -> np.ndarray:
    """Bin of each value: [e_0, e_1), [e_1, e_2), ..., [e_{K-1}, e_K] (the last bin closed, so 1.0 is in it).

    Values outside [e_0, e_K] are an error: pre-memorization accuracy lies in [0, 1].
    """
    x = np.asarray(values, dtype=float)
    e = np.asarray(edges, dtype=float)
    if e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"bin edges must increase, got {list(edges)}")
    if x.size and (np.nanmin(x) < e[0] or np.nanmax(x) > e[-1]):
        raise ValueError(f"values outside the bins [{e[0]}, {e[-1]}]")
    return np.clip(np.searchsorted(e, x, side="right") - 1, 0, e.size - 2)


def bin_label(k: int, edges=EDGES) -> str:
    close = "]" if k == len(edges) - 2 else ")"
    return f"[{edges[k]:g}, {edges[k + 1]:g}{close}"


def robustness_bins(per_example: pl.DataFrame, edges=EDGES, *, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Mean sample accuracy per pre-memorization bin and condition, with a 95% bootstrap interval over examples.

    `per_example`: example_id, premem, condition ("unperturbed" or the prefix), accuracy (that example's share of
    correct samples under the condition). Returns one dict per (bin, condition): bin, low, high, condition,
    n_examples, mean, ci_low, ci_high (NaN intervals for a bin of fewer than 2 examples).
    """
    needed = {"example_id", "premem", "condition", "accuracy"}
    if not needed <= set(per_example.columns):
        raise ValueError(f"robustness rows lack columns {sorted(needed - set(per_example.columns))}")
    frame = per_example.drop_nulls(["premem", "accuracy"])
    frame = frame.with_columns(bin=pl.Series(bin_index(frame["premem"].to_numpy(), edges), dtype=pl.Int64))
    rng = np.random.default_rng(seed)
    out = []
    conditions = frame["condition"].unique(maintain_order=True).to_list()
    for k in range(len(edges) - 1):
        for condition in conditions:
            values = frame.filter((pl.col("bin") == k) & (pl.col("condition") == condition))["accuracy"].to_numpy()
            mean = float(values.mean()) if values.size else math.nan
            low = high = math.nan
            if values.size >= 2:
                boots = values[rng.integers(0, values.size, (n_boot, values.size))].mean(axis=1)
                low, high = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
            out.append({"bin": bin_label(k, edges), "low": edges[k], "high": edges[k + 1], "condition": condition,
                        "n_examples": int(values.size), "mean": mean, "ci_low": low, "ci_high": high})
    return out
