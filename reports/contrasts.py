"""Head-to-head contrasts: how one strategy's data efficiency compares with another's on the same replicates.

Each strategy's ratio against i.i.d. carries the spread between replicates, and two strategies of one comparison
share their replicates (seed set, pool, test subset and training seed). Setting their intervals side by side throws
that pairing away; the contrast keeps it. For strategies A and B at the same number of examples n, on the k
replicates where both have an exact ratio (`reports.efficiency`'s per-replicate ratio, no bound):

    q_i = DE_A,i / DE_B,i = n_R(acc_A,i) / n_R(acc_B,i)      (the i.i.d. examples each one's accuracy is worth)
    Q   = exp(mean_i log q_i),  95% interval exp(mean_i log q_i -+ t_{0.975, k-1} * sd_i(log q_i) / sqrt(k))

Q > 1: A needed fewer examples than B for what it reached. The interval is Student's t over replicates on the log
scale (`reports.stats.mean_interval`), the unit of replication as everywhere in the report; its coverage is checked
by simulation against a known quotient in tests/unit/test_contrasts.py. A replicate where either ratio is a bound
(the strategy beat the i.i.d. curve's largest budget) or undefined is left out and counted, since its quotient is
not known.

The report contrasts every `auto` controller with each arm it chooses from that also ran as a fixed strategy: what a
user who picked `auto` gained or lost against one who knew which arm wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl

from reports.stats import mean_interval


def paired_quotient(a: Mapping[int, float | None], b: Mapping[int, float | None]) -> dict:
    """Q of A over B and its 95% interval over the replicates both have a usable ratio for (module docstring):
    {mean, ci_low, ci_high, n_seeds, left_out}; mean None where no replicate is usable, interval ends None with
    one replicate (no spread to measure)."""
    shared = sorted(set(a) & set(b))
    logs = [math.log(a[s] / b[s]) for s in shared if _usable(a[s]) and _usable(b[s])]
    left_out = len(set(a) | set(b)) - len(logs)
    if not logs:
        return {"mean": None, "ci_low": None, "ci_high": None, "n_seeds": 0, "left_out": left_out}
    centre = mean_interval(logs)
    spread = len(logs) > 1
    return {"mean": math.exp(centre.mean), "ci_low": math.exp(centre.low) if spread else None,
            "ci_high": math.exp(centre.high) if spread else None, "n_seeds": len(logs), "left_out": left_out}


def strategy_contrasts(per_seed: pl.DataFrame, pairs: Iterable[tuple[str, str]], n_examples: Mapping[str, int]
                       ) -> list[dict]:
    """One contrast per (A, B) in `pairs`, at A's headline size `n_examples[A]`, from `reports.efficiency.seed_ratios`'
    frame (a bounded replicate's ratio is unusable). A pair whose strategies are missing, or B without ratios at
    that size, is skipped."""
    out = []
    for strategy, against in pairs:
        n = n_examples.get(strategy)
        if n is None:
            continue
        a, b = (_ratios(per_seed, s, n) for s in (strategy, against))
        if a and b:
            out.append({"strategy": strategy, "against": against, "n_examples": n, **paired_quotient(a, b)})
    return out


def _ratios(per_seed: pl.DataFrame, strategy: str, n: int) -> dict[int, float | None]:
    rows = per_seed.filter((pl.col("strategy") == strategy) & (pl.col("n_examples") == n))
    return {seed: (None if bound else ratio)
            for seed, ratio, bound in rows.select("seed", "ratio", "bound").iter_rows()}


def _usable(ratio: float | None) -> bool:
    return ratio is not None and bool(np.isfinite(ratio)) and ratio > 0
