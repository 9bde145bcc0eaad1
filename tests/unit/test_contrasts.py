"""The head-to-head contrast (reports.contrasts): the paired quotient on hand-made replicates, its interval's
coverage against a known quotient by simulation, its place in the summary and page, and the pairs a config asks
for (each auto against the fixed arms it chooses from)."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from loop.schema import EVAL_SCHEMA, TIMING_SCHEMA
from reports import write_report
from reports.contrasts import paired_quotient, strategy_contrasts
from reports.run import auto_contrasts
from reports.stats import t_quantile_975


def test_equal_quotients_give_that_quotient_exactly():
    assert paired_quotient({0: 2.0, 1: 3.0, 2: 1.0}, {0: 1.0, 1: 1.5, 2: 0.5}) == {
        "mean": 2.0, "ci_low": 2.0, "ci_high": 2.0, "n_seeds": 3, "left_out": 0}


def test_the_quotient_is_a_geometric_mean_with_a_t_interval_on_logs():
    # log q = [ln 2, -ln 2]: mean 0, sd ln2 * sqrt 2, standard error ln 2, t_{0.975, 1} = 12.706
    got = paired_quotient({0: 2.0, 1: 0.5}, {0: 1.0, 1: 1.0})
    assert got["mean"] == pytest.approx(1.0)
    assert got["ci_low"] == pytest.approx(2.0 ** -t_quantile_975(1))
    assert got["ci_high"] == pytest.approx(2.0 ** t_quantile_975(1))
    # and the pairing: a replicate effect both strategies share cancels
    shared = {0: 1.0, 1: 10.0, 2: 0.2}
    assert paired_quotient({s: 1.5 * v for s, v in shared.items()}, shared)["ci_low"] == pytest.approx(1.5)


def test_bounds_missing_and_one_sided_replicates_are_left_out_and_counted():
    got = paired_quotient({0: 2.0, 1: None, 2: 4.0, 4: 1.0}, {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    assert got["n_seeds"] == 2 and got["left_out"] == 3  # 1 (a bound), 3 (only B), 4 (only A)
    assert got["mean"] == pytest.approx(math.sqrt(8.0))
    one = paired_quotient({0: 3.0}, {0: 1.5})
    assert one == {"mean": 2.0, "ci_low": None, "ci_high": None, "n_seeds": 1, "left_out": 0}
    assert paired_quotient({0: None}, {0: 1.0})["mean"] is None
    assert paired_quotient({0: 0.0}, {0: 1.0})["n_seeds"] == 0  # a zero ratio has no log


def test_the_interval_covers_a_known_quotient_at_the_stated_rate():
    """16 replicates, as the GPU presets: a replicate effect both strategies share (large, skewed) and each
    strategy's own noise. The interval should cover the true quotient about 95% of the time, and be narrower than
    the unpaired comparison would be."""
    rng = np.random.default_rng(0)
    true_q, trials, covered, widths, unpaired = 1.2, 4000, 0, [], []
    for _ in range(trials):
        replicate = np.exp(rng.gamma(2.0, 0.2, size=16) - 0.4)  # skewed, shared by both
        a = true_q * replicate * np.exp(rng.normal(0, 0.12, size=16))
        b = replicate * np.exp(rng.normal(0, 0.12, size=16))
        got = paired_quotient(dict(enumerate(a)), dict(enumerate(b)))
        covered += got["ci_low"] <= true_q <= got["ci_high"]
        widths.append(math.log(got["ci_high"] / got["ci_low"]))
        # the width of the same interval with the pairing thrown away (two independent samples' means)
        spread = np.var(np.log(a), ddof=1) + np.var(np.log(b), ddof=1)
        unpaired.append(2 * t_quantile_975(15) * math.sqrt(spread / 16))
    assert 0.935 <= covered / trials <= 0.965
    assert np.median(widths) < 0.6 * np.median(unpaired)


def per_seed_frame() -> pl.DataFrame:
    rows = [("auto", s, 192, 2.0 * (1 + s), None) for s in range(3)]
    rows += [("loss", s, 192, 1.0 * (1 + s), None) for s in range(3)]
    rows += [("premem", 0, 192, 3.0, "lower"), ("premem", 1, 192, 2.0, None), ("premem", 2, 192, 3.0, None)]
    return pl.DataFrame(rows, schema={"strategy": pl.String, "seed": pl.Int64, "n_examples": pl.Int64,
                                      "ratio": pl.Float64, "bound": pl.String}, orient="row")


def test_contrasts_read_each_replicates_ratio_at_the_strategys_headline_size():
    got = strategy_contrasts(per_seed_frame(), [("auto", "loss"), ("auto", "premem"), ("auto", "ghost"),
                                                ("ghost", "loss")], {"auto": 192, "loss": 192, "premem": 192})
    assert [(c["against"], c["n_seeds"], c["left_out"]) for c in got] == [("loss", 3, 0), ("premem", 2, 1)]
    assert got[0]["mean"] == pytest.approx(2.0) and got[0]["ci_low"] == pytest.approx(2.0)
    assert got[1]["mean"] == pytest.approx(2.0)  # seeds 1 and 2: 4 / 2 and 6 / 3; seed 0's premem is a bound


def test_each_auto_is_contrasted_with_its_arms_that_ran_as_plain_fixed_strategies():
    entries = [{"name": "random", "params": {}, "label": None}, {"name": "loss", "params": {}, "label": None},
               {"name": "premem", "params": {"threshold": 0.5}, "label": "premem_05"},
               {"name": "auto", "params": {"arms": ["premem", "loss"]}, "label": None},
               {"name": "auto", "params": {}, "label": "auto_default"}]
    # premem ran only with other params (a label): not the arm auto draws; random is auto's own reference
    assert auto_contrasts(entries) == [("auto", "loss"), ("auto_default", "loss")]


def test_the_report_shows_and_stores_the_contrast(tmp_path):
    rows = []
    for seed in range(4):
        rows.append(("shared", seed, 0, 100, 0.50 + 0.01 * seed))
        for rnd, (n, acc) in enumerate([(200, 0.60), (400, 0.70), (800, 0.75)], start=1):
            rows.append(("random", seed, rnd, n, acc + 0.01 * seed))
        rows.append(("loss", seed, 1, 200, 0.64 + 0.01 * seed + 0.004 * (seed % 2)))
        rows.append(("auto", seed, 1, 200, 0.66 + 0.01 * seed))
    evals = pl.DataFrame([(*r, 200, 5) for r in rows], schema=EVAL_SCHEMA, orient="row")
    index = write_report(evals, pl.DataFrame(schema=TIMING_SCHEMA), tmp_path / "report", title="t",
                         config_summary={}, contrasts=[("auto", "loss")])
    summary = json.loads((index.parent / "summary.json").read_text())
    (contrast,) = summary["contrasts"]
    auto_seeds = {r["seed"]: r["ratio"] for r in summary["strategies"]["auto"]["ratio"]["per_seed"]}
    loss_seeds = {r["seed"]: r["ratio"] for r in summary["strategies"]["loss"]["ratio"]["per_seed"]}
    assert contrast == {"strategy": "auto", "against": "loss", "n_examples": 200,
                        **paired_quotient(auto_seeds, loss_seeds)}
    assert contrast["mean"] > 1 and contrast["n_seeds"] == 4
    assert "Head to head" in index.read_text()
