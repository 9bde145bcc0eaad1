"""Mean and 95% t-interval over paired seeds, without scipy.

Every interval in the report is a Student-t interval over seeds: seeds are the unit of
replication (each fixes the seed set, model init and data order for every strategy), so
the spread between seeds is the uncertainty we report.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Two-sided 95% quantiles t_{0.975, df} for df = 1..30 (standard tables). Small seed counts
# are the common case (3-5 seeds), where the normal approximation is badly too narrow.
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836,
    2.446911851, 2.364624252, 2.306004135, 2.262157163, 2.228138852,
    2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546,
    2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447,
    2.079613845, 2.073873068, 2.068657610, 2.063898562, 2.059538553,
    2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)
_Z975 = 1.959963984540054


class Interval(NamedTuple):
    """Mean of the values and the ends of its 95% interval."""

    mean: float
    low: float
    high: float


def t_quantile_975(df: int) -> float:
    """Return t_{0.975, df}: table up to df = 30, Cornish-Fisher expansion above (error < 1e-6)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def mean_interval(values) -> Interval:
    """Mean and 95% t-interval: mean +- t_{0.975, k-1} * sd / sqrt(k) over k values.

    One value, or values that are all equal, give a zero-width interval at that value;
    no values give NaNs. Non-finite values are rejected because a mean over them is meaningless.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"mean_interval needs finite values, got {x.tolist()}")
    if np.all(x == x[0]):
        # No spread (one seed, or seeds that agree): the point itself, exactly, not a rounded mean.
        v = float(x[0])
        return Interval(v, v, v)
    mean = float(x.mean())
    half = t_quantile_975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half)
