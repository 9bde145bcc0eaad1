"""Hand-computed cases for the report metrics: curves, intervals, data-efficiency ratio, AULC, deficiency, compute."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from loop.schema import EVAL_SCHEMA, TIMING_SCHEMA
from reports import (
    area_under_curve,
    compute_by_stage,
    curve_points,
    deficiency,
    fold_shared,
    headline_ratios,
    mean_interval,
    seed_aulc,
    seed_ratios,
    strategy_aulc,
    strategy_ratios,
)
from reports.stats import t_quantile_975

REF_N = [100, 200, 400]
REF_ACC = [0.5, 0.6, 0.7]


def evals(rows) -> pl.DataFrame:
    """rows: (strategy, seed, round, n_examples, accuracy); question/sample counts are filler."""
    return pl.DataFrame([(*r, 100, 1) for r in rows], schema=EVAL_SCHEMA, orient="row")


# --- intervals -------------------------------------------------------------------------------

def test_t_quantiles_match_tables_and_expansion():
    assert t_quantile_975(1) == pytest.approx(12.7062047, abs=1e-6)
    assert t_quantile_975(4) == pytest.approx(2.7764451, abs=1e-6)
    # Above the table the Cornish-Fisher expansion takes over; reference values from t tables.
    assert t_quantile_975(40) == pytest.approx(2.0210754, abs=1e-6)
    assert t_quantile_975(120) == pytest.approx(1.9799304, abs=1e-6)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_mean_interval_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0])  # sd 1, half-width t_{0.975,2} / sqrt(3)
    half = 4.302652730 / math.sqrt(3)
    assert iv.mean == 2.0
    assert iv.low == pytest.approx(2.0 - half) and iv.high == pytest.approx(2.0 + half)
    assert mean_interval([0.7, 0.7, 0.7]) == (0.7, 0.7, 0.7)  # identical seeds: zero width
    assert mean_interval([0.4]) == (0.4, 0.4, 0.4)  # one seed: the point itself
    assert all(math.isnan(v) for v in mean_interval([]))


# --- curves and round-0 folding ---------------------------------------------------------------

def test_curve_points_fold_round0_into_every_strategy():
    ev = evals([
        ("shared", 0, 0, 100, 0.5), ("shared", 1, 0, 100, 0.5),
        ("random", 0, 1, 200, 0.6), ("random", 1, 1, 200, 0.6),
        ("premem", 0, 1, 200, 0.6), ("premem", 1, 1, 200, 0.8),
    ])
    pts = curve_points(ev)
    assert set(pts["strategy"]) == {"random", "premem"}  # "shared" is folded away
    first = pts.filter(pl.col("n_examples") == 100)
    assert first["strategy"].sort().to_list() == ["premem", "random"]
    assert first["accuracy_mean"].to_list() == [0.5, 0.5] and first["n_seeds"].to_list() == [2, 2]
    rnd = pts.filter((pl.col("strategy") == "random") & (pl.col("n_examples") == 200)).row(0, named=True)
    assert rnd["ci_low"] == rnd["ci_high"] == 0.6  # identical seeds: zero-width interval
    pm = pts.filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 200)).row(0, named=True)
    half = 12.706204736 * np.std([0.6, 0.8], ddof=1) / math.sqrt(2)
    assert pm["accuracy_mean"] == pytest.approx(0.7)
    assert pm["ci_high"] - pm["ci_low"] == pytest.approx(2 * half)


def test_fold_shared_pairs_by_seed_and_respects_own_round0():
    ev = evals([
        ("shared", 0, 0, 100, 0.5), ("shared", 1, 0, 100, 0.5),
        ("random", 0, 1, 200, 0.6),  # seed 1 never ran random: no shared copy for it
        ("custom", 0, 0, 100, 0.3), ("custom", 0, 1, 200, 0.4),  # has its own round 0
    ])
    f = fold_shared(ev)
    assert f.filter(pl.col("strategy") == "random")["seed"].to_list() == [0, 0]
    assert f.filter(pl.col("strategy") == "custom")["accuracy"].to_list() == [0.3, 0.4]


def test_fold_shared_rejects_bad_tables_naming_the_field():
    with pytest.raises(ValueError, match="accuracy"):
        fold_shared(evals([("random", 0, 1, 200, 0.6)]).drop("accuracy"))
    with pytest.raises(ValueError, match="duplicate"):
        fold_shared(evals([("random", 0, 1, 200, 0.6), ("random", 0, 1, 200, 0.7)]))
    with pytest.raises(ValueError, match="n_examples must be > 0"):
        fold_shared(evals([("random", 0, 1, 0, 0.6)]))
    nulls = evals([("random", 0, 1, 200, 0.6)]).with_columns(pl.lit(None, pl.Float64).alias("accuracy"))
    with pytest.raises(ValueError, match="'accuracy' is null"):
        fold_shared(nulls)
    with pytest.raises(ValueError, match="empty"):
        fold_shared(evals([]))


# --- data-efficiency ratio --------------------------------------------------------------------

def line(n, level=0.0):
    """A noise-free i.i.d. curve, linear in log n: 0.1 per doubling, 0.4 at n = 100."""
    return 0.4 + level + 0.1 * math.log2(n / 100)


def curve_evals(levels=(0.0, 0.05, -0.03), strategy_ratio=2.0, n_strategy=200, budgets=(100, 200, 400, 800)):
    """Replicates with i.i.d. curves on `line` at their own levels, and a strategy that at n_strategy reaches
    what i.i.d. reaches with strategy_ratio times as many examples, on each replicate."""
    rows = []
    for seed, level in enumerate(levels):
        rows.append(("shared", seed, 0, budgets[0], line(budgets[0], level)))
        rows += [("random", seed, i + 1, n, line(n, level)) for i, n in enumerate(budgets[1:])]
        rows.append(("premem", seed, 1, n_strategy, line(strategy_ratio * n_strategy, level)))
    return evals(rows)


def test_a_known_ratio_is_recovered_on_each_replicate_s_own_curve():
    r = strategy_ratios(curve_evals()).filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 200)).row(0, named=True)
    assert r["mean"] == pytest.approx(2.0, rel=1e-6) and r["bound"] is None and r["n_seeds"] == 3
    # Noise-free curves: every replicate gives 2 exactly, so the interval is 2 as well.
    assert r["ci_low"] == pytest.approx(2.0, rel=1e-6) and r["ci_high"] == pytest.approx(2.0, rel=1e-6)
    assert r["max_measurable"] == pytest.approx(800 / 200)
    per = seed_ratios(curve_evals()).filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 200))
    assert per["ratio"].to_list() == pytest.approx([2.0] * 3, rel=1e-6)
    assert per["iid_examples"].to_list() == pytest.approx([400.0] * 3, rel=1e-6)


def test_random_against_itself_is_exactly_one():
    r = strategy_ratios(curve_evals()).filter(pl.col("strategy") == "random")
    assert r["mean"].to_list() == [1.0] * r.height and r["ci_low"].to_list() == [1.0] * r.height


def test_one_replicate_has_no_interval():
    r = strategy_ratios(curve_evals(levels=(0.0,))).filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 200)).row(0, named=True)
    assert r["mean"] == pytest.approx(2.0, rel=1e-6)
    assert r["ci_low"] is None and r["ci_high"] is None and r["n_seeds"] == 1


def test_a_strategy_beyond_the_iid_curve_is_a_flagged_lower_bound():
    # Ratio 8 at n 200: i.i.d. would need 1,600 examples, beyond its largest budget (800).
    r = strategy_ratios(curve_evals(strategy_ratio=8.0)).filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 200)).row(0, named=True)
    assert r["bound"] == "lower" and r["mean"] == pytest.approx(4.0, rel=1e-6)  # entered at 800 / 200
    assert r["ci_high"] is None and r["ci_low"] <= r["mean"]
    below = strategy_ratios(curve_evals(strategy_ratio=0.25)).filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 200)).row(0, named=True)
    assert below["bound"] == "upper" and below["mean"] == pytest.approx(0.5, rel=1e-6) and below["ci_low"] is None


def test_noisy_replicates_give_an_interval_around_the_ratio():
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(12):
        level = rng.normal(0, 0.05)
        rows.append(("shared", seed, 0, 100, line(100, level) + rng.normal(0, 0.01)))
        rows += [("random", seed, i + 1, n, line(n, level) + rng.normal(0, 0.01)) for i, n in enumerate((200, 400, 800))]
        rows.append(("loss", seed, 1, 200, line(300, level) + rng.normal(0, 0.01)))
    r = strategy_ratios(evals(rows)).filter((pl.col("strategy") == "loss") & (pl.col("n_examples") == 200)).row(
        0, named=True)
    assert r["ci_low"] < 1.5 < r["ci_high"] and 1.2 < r["mean"] < 1.9 and r["se_log"] > 0


def test_headline_is_the_final_budget_shared_by_all_seeds():
    ev = pl.concat([curve_evals(), evals([("premem", 0, 2, 400, line(800))])])
    head = headline_ratios(strategy_ratios(ev))
    # n 400 has one seed only (the others are unfinished): the headline stays at n 200 with all three.
    assert head.filter(pl.col("strategy") == "premem")["n_examples"].to_list() == [200]
    assert head["strategy"].to_list() == ["premem", "random"]


def test_strategy_ratios_need_the_reference():
    with pytest.raises(ValueError, match="'random'"):
        strategy_ratios(evals([("shared", 0, 0, 100, 0.5), ("premem", 0, 1, 200, 0.6)]))


# --- AULC and deficiency ----------------------------------------------------------------------

def test_aulc_of_a_constant_curve_is_the_constant():
    assert area_under_curve([100, 300, 5000], [0.42, 0.42, 0.42]) == pytest.approx(0.42)
    assert area_under_curve([100, 300, 5000], [0.42, 0.42, 0.42], log_n=False) == pytest.approx(0.42)
    assert area_under_curve([100], [0.42]) == 0.42


def test_aulc_by_hand_on_log_and_linear_axes():
    n, acc = [100, 200, 800], [0.5, 0.6, 0.6]
    # ln-axis widths ln 2 and 2 ln 2: (0.55 ln2 + 0.6 * 2 ln2) / 3 ln2 = 1.75 / 3.
    assert area_under_curve(n, acc) == pytest.approx(1.75 / 3)
    # n-axis widths 100 and 600: (55 + 360) / 700.
    assert area_under_curve(n, acc, log_n=False) == pytest.approx(415 / 700)
    # Restricted to [100, 200] of a curve measured at 100 and 400: 0.6 interpolated at 200 (in ln n).
    assert area_under_curve([100, 400], [0.5, 0.7], n_range=(100, 200)) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="not inside"):
        area_under_curve([100, 400], [0.5, 0.7], n_range=(100, 800))


def test_deficiency_by_hand():
    assert deficiency(REF_N, REF_ACC, REF_N, REF_ACC) == 1.0  # random against itself
    # sum(0.7 - [0.5, 0.65, 0.7]) / sum(0.7 - [0.5, 0.6, 0.7]) = 0.25 / 0.3
    assert deficiency(REF_N, REF_ACC, REF_N, [0.5, 0.65, 0.7]) == pytest.approx(0.25 / 0.3)
    # Reference interpolated in ln n at 200: 0.6; n_K = 200: (0.1 - 0.05) / (0.1 + 0).
    assert deficiency([100, 400], [0.5, 0.7], [100, 200], [0.5, 0.65]) == pytest.approx(0.5)
    # Points beyond the reference are dropped; a flat reference leaves it undefined.
    assert deficiency([100, 200], [0.5, 0.6], [100, 200, 400], [0.5, 0.65, 0.9]) == pytest.approx(0.5)
    assert math.isnan(deficiency([100, 200], [0.6, 0.6], [100, 200], [0.6, 0.7]))


def test_strategy_aulc_pairs_on_the_shared_range():
    ev = evals([
        ("shared", 0, 0, 100, 0.5), ("shared", 1, 0, 100, 0.5),
        ("random", 0, 1, 200, 0.6), ("random", 1, 1, 200, 0.6),
        ("random", 0, 2, 800, 0.9), ("random", 1, 2, 800, 0.9),  # extended i.i.d. reference point
        ("same", 0, 1, 200, 0.6), ("same", 1, 1, 200, 0.6),
        ("better", 0, 1, 200, 0.7), ("better", 1, 1, 200, 0.7),
    ])
    per_seed = seed_aulc(ev)
    same = per_seed.filter(pl.col("strategy") == "same")
    # Identical to random on 100..200: zero difference, although random's own AULC (to 800) is larger.
    assert same["diff"].to_list() == [0.0, 0.0]
    assert same["deficiency"].to_list() == [1.0, 1.0]
    s = strategy_aulc(ev).filter(pl.col("strategy") == "better").row(0, named=True)
    assert s["aulc_mean"] == pytest.approx(0.6) and s["diff_mean"] == pytest.approx(0.05)
    assert s["diff_ci_low"] == pytest.approx(0.05) and s["diff_n_seeds"] == 2
    # R(200) = 0.6: ((0.6 - 0.5) + (0.6 - 0.7)) / ((0.6 - 0.5) + 0) = 0.
    assert s["deficiency_mean"] == pytest.approx(0.0)
    rnd = strategy_aulc(ev).filter(pl.col("strategy") == "random").row(0, named=True)
    assert rnd["aulc_mean"] == pytest.approx((0.55 + 0.75 * 2) / 3) and rnd["n_max"] == 800


# --- compute ----------------------------------------------------------------------------------

def test_compute_by_stage_sums_seconds():
    tm = pl.DataFrame([
        ("shared", 0, 0, "train", 10.0),
        ("premem", 0, 1, "train", 4.0), ("premem", 1, 1, "train", 6.0),
        ("premem", 0, 1, "dynamics", 3.0), ("premem", 1, 2, "dynamics", 7.0),
        ("random", 0, 1, "train", 5.0),
    ], schema=TIMING_SCHEMA, orient="row")
    c = compute_by_stage(tm)
    pm = {r["stage"]: r for r in c.filter(pl.col("strategy") == "premem").to_dicts()}
    assert pm["train"]["seconds"] == 10.0 and pm["dynamics"]["seconds"] == 10.0
    assert pm["train"]["seconds_per_seed"] == 5.0 and pm["train"]["n_seeds"] == 2
    assert pm["train"]["share"] == 0.5
    assert c.filter(pl.col("strategy") == "shared")["seconds"].to_list() == [10.0]
    assert compute_by_stage(tm.head(0)).height == 0
    with pytest.raises(ValueError, match=">= 0"):
        compute_by_stage(tm.with_columns(pl.lit(-1.0).alias("seconds")))


def test_a_flat_iid_curve_gives_no_ratio_instead_of_failing():
    rows = [("shared", s, 0, 100, 0.0) for s in (0, 1)]
    rows += [("random", s, 1, 200, 0.0) for s in (0, 1)] + [("premem", s, 1, 200, 0.0) for s in (0, 1)]
    r = strategy_ratios(evals(rows)).filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 200))
    assert r["bound"].to_list() == ["undefined"] and r["ci_low"].to_list() == [None]


def test_verdicts_read_as_plain_sentences_with_open_ends():
    from reports.efficiency import RatioEstimate
    from reports.power import verdict

    def est(value, low, high, bound=None, se=0.1, r=16):
        return RatioEstimate(80, value, low, high, r, bound, se, 3.0)

    assert verdict("loss", est(1.4, 1.2, 1.6)).startswith("loss needs 1.40x [1.20, 1.60] fewer examples")
    assert "needs more examples than i.i.d." in verdict("premem", est(0.8, 0.7, 0.9))
    flat = verdict("premem", est(1.05, 0.9, 1.2))
    assert "not distinguishable from i.i.d. at 16 replicates" in flat and "1.2x effect would need" in flat
    assert "[1.10, open]" in verdict("loss", est(1.6, 1.1, None))
    assert "[open, 1.30]" in verdict("loss", est(0.9, None, 1.3))
    assert "at least 3.00x" in verdict("loss", est(3.0, 2.1, None, bound="lower"))
    assert "no interval" in verdict("loss", est(1.3, None, None, se=None, r=1))
    assert "at most 0.33x (95% upper limit 0.50x)" in verdict("loss", est(0.33, None, 0.5, bound="upper"))
    assert "(95% upper limit open)" in verdict("loss", est(0.33, None, None, bound="upper"))


def test_strategy_wholly_below_the_first_iid_point_is_an_upper_bound_without_power_figures(tmp_path):
    # Two replicates whose i.i.d. curves rise 0.5 -> 0.6 -> 0.7; "stale" stays under the first point.
    rows = [("shared", s, 0, 100, 0.5 + 0.01 * s) for s in (0, 1)]
    rows += [("random", s, 1, 200, 0.6 + 0.01 * s) for s in (0, 1)] + [("random", s, 2, 400, 0.7) for s in (0, 1)]
    rows += [("stale", s, 1, 200, 0.3 + 0.02 * s) for s in (0, 1)]
    r = strategy_ratios(evals(rows)).filter((pl.col("strategy") == "stale") & (pl.col("n_examples") == 200))
    assert r["bound"].to_list() == ["upper"]
    assert r["mean"].to_list()[0] == pytest.approx(0.5)  # known only to be at most 100 / 200
    # Its whole interval lies below the first point too: the upper limit is that edge, a conservative 0.5.
    assert r["ci_high"].to_list()[0] == pytest.approx(0.5) and r["ci_low"].to_list() == [None]
    from reports.summary import build_summary

    summary = build_summary(evals(rows), pl.DataFrame(schema=TIMING_SCHEMA))
    for name in ("stale", "random"):  # a censored spread and the reference's own curve give no power figure
        assert summary["strategies"][name]["ratio"]["detectable_ratio"] is None
        assert summary["strategies"][name]["ratio"]["replicates_for_1_2x"] is None
    assert any("stale fell below the i.i.d. curve's first point" in v for v in summary["verdict"])


# --- the paired estimator and the fit check ---------------------------------------------------

def bumpy_evals(strategy_acc: dict[int, float], seeds=(0, 1, 2)) -> pl.DataFrame:
    """Random at 16, 28, 40, 70 and 120 examples dipping at 28 (as the CPU default's curve did), so a polynomial in
    log n misreads it; a strategy `loss` at the given budgets; replicates offset by 0.01 each."""
    iid = {16: 0.40, 28: 0.385, 40: 0.48, 70: 0.48, 120: 0.57}
    rows = []
    for s in seeds:
        rows.append(("shared", s, 0, 16, 0.40 + 0.01 * s))
        rows += [("random", s, r, n, a + 0.01 * s) for r, (n, a) in enumerate(list(iid.items())[1:], start=1)]
        rows += [("loss", s, r, n, a + 0.01 * s) for r, (n, a) in enumerate(strategy_acc.items(), start=1)]
    return evals(rows)


def test_random_and_every_round_zero_are_exactly_one_where_the_curve_misfits():
    """The paired difference of a strategy that equals random at its budget is 0: ratio exactly 1, interval
    [1, 1], whatever the curve does; the fitted curve reads the same accuracies as far from 1."""
    from reports.efficiency import estimate_ratio, ratio_estimates

    estimates = ratio_estimates(bumpy_evals({28: 0.385, 40: 0.48}))
    for n in (16, 28, 40):  # 16: round 0, at the curve's first budget
        e = estimates[("loss", n)]
        assert e.estimator == "paired"
        assert e.value == pytest.approx(1.0, abs=1e-9) and e.low == pytest.approx(1.0, abs=1e-9)
        assert e.high == pytest.approx(1.0, abs=1e-9)
    ev = bumpy_evals({28: 0.385, 40: 0.48})
    ref = ev.filter(pl.col("strategy") == "random").sort("seed", "n_examples")
    matrix = np.array([[0.40 + 0.01 * s] + ref.filter(pl.col("seed") == s)["accuracy"].to_list() for s in (0, 1, 2)])
    fitted = estimate_ratio(np.array([16, 28, 40, 70, 120.0]), matrix, matrix[:, 2], 40.0)
    assert abs(fitted.value - 1) > 0.2  # the fit's residual at 40, which the paired estimate does not carry


def test_fit_residuals_read_random_through_its_own_curve():
    """On points the curve passes through exactly, every residual is 1; where random dips below the curve, its own
    point reads below 1 there (fewer examples than it had), above 1 where it sits over the curve."""
    from reports.efficiency import iid_residuals

    straight = {n: 0.3 + 0.1 * math.log(n / 16) for n in (16, 28, 40, 70, 120)}
    rows = [("random" if n > 16 else "shared", s, k, n, a + 0.01 * s) for s in (0, 1, 2)
            for k, (n, a) in enumerate(straight.items())]
    flat = iid_residuals(evals(rows))
    assert sorted(flat) == [16, 28, 40, 70, 120]
    assert all(r.value == pytest.approx(1.0, abs=1e-6) for r in flat.values())
    bumpy = iid_residuals(bumpy_evals({28: 0.4}))
    assert bumpy[28].value < 1 < bumpy[40].value


def test_curve_error_is_the_residual_change_between_n_and_n_r_and_flags_beyond_the_half_width():
    """Residuals 1.0 at 16, 2.0 at 64 (interpolated in log n: sqrt 2 at 32): a paired ratio 2 from 16 reaches 32,
    error log sqrt(2) - log 1; a fitted one carries the residual at 32 itself. Flagged where the error exceeds
    the interval's half-width on the log scale."""
    from reports.efficiency import RatioEstimate, _checked, curve_error

    residuals = {16: RatioEstimate(16, 1.0, 0.9, 1.1, 3, None, 0.1, 4.0),
                 64: RatioEstimate(64, 2.0, 1.5, 2.5, 3, None, 0.1, 1.0)}
    paired = RatioEstimate(16, 2.0, 1.9, 2.1, 3, None, 0.02, 4.0, estimator="paired")
    assert curve_error(residuals, paired) == pytest.approx(math.log(math.sqrt(2)))
    at_32 = RatioEstimate(32, 1.0, 0.5, 2.0, 3, None, 0.3, 2.0, estimator="paired")
    assert curve_error(residuals, at_32) == pytest.approx(0.0)  # a ratio of 1 reaches where it started
    fitted = RatioEstimate(16, 2.0, 1.9, 2.1, 3, None, 0.02, 4.0, estimator="fitted")
    assert curve_error(residuals, fitted) == pytest.approx(math.log(math.sqrt(2)))
    assert _checked(paired, residuals).flagged  # 0.35 against a half-width of log(2.1 / 1.9) / 2 = 0.05
    wide = RatioEstimate(16, 2.0, 0.5, 8.0, 3, None, 0.7, 4.0, estimator="paired")
    assert not _checked(wide, residuals).flagged
    single = RatioEstimate(16, 2.0, None, None, 1, None, None, 4.0, estimator="paired")
    assert not _checked(single, residuals).flagged  # no interval to compare with
    edge = RatioEstimate(16, 0.5, None, 0.5, 3, "upper", 0.0, 4.0, estimator="paired")
    assert not _checked(edge, residuals).flagged  # every replicate censored at the curve's edge: no spread either
    assert _checked(edge, residuals).curve_error is not None
    undefined = {16: RatioEstimate(16, math.nan, None, None, 3, "undefined", None, 4.0)}
    assert curve_error(undefined, paired) is None


def test_a_flagged_ratio_says_so_in_its_verdict():
    from reports.efficiency import RatioEstimate
    from reports.power import verdict

    e = RatioEstimate(40, 1.27, 1.1, 1.4, 3, None, 0.05, 3.0, estimator="paired", curve_error=math.log(1.48),
                      flagged=True)
    assert "caution: the fitted i.i.d. curve misreads random's own accuracy by 1.48x" in verdict("premem", e)
    assert "caution" not in verdict("premem", RatioEstimate(40, 1.27, 1.1, 1.4, 3, None, 0.05, 3.0))


def test_a_budget_random_never_reached_falls_back_to_the_fitted_estimator():
    """The auto controller's grown budgets need not be random's: there the ratio is located on the fitted curve."""
    from reports.efficiency import ratio_estimates

    estimates = ratio_estimates(bumpy_evals({50: 0.5}))
    assert estimates[("loss", 50)].estimator == "fitted" and estimates[("loss", 16)].estimator == "paired"
