"""The report folder: files written, summary.json schema, numbers equal to the metric functions, figure."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from loop.schema import EVAL_SCHEMA, TIMING_SCHEMA
from reports import curve_points, plot_curves, strategy_aulc, strategy_ratios, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POINT_KEYS = {"n_examples", "accuracy_mean", "ci_low", "ci_high", "n_seeds"}
RATIO_KEYS = {"n_examples", "mean", "ci_low", "ci_high", "n_seeds", "bound", "se_log", "max_measurable",
              "estimator", "curve_error", "flagged",
              "detectable_ratio", "replicates_for_1_2x", "per_seed"}


def make_evals() -> pl.DataFrame:
    rows = []
    for seed in (0, 1, 2):
        rows.append(("shared", seed, 0, 100, 0.50 + 0.01 * seed))
        for rnd, (n, acc) in enumerate([(200, 0.60), (400, 0.70), (800, 0.75)], start=1):
            rows.append(("random", seed, rnd, n, acc + 0.01 * seed))
        for rnd, (n, acc) in enumerate([(200, 0.65), (400, 0.72 + 0.01 * seed)], start=1):
            rows.append(("premem", seed, rnd, n, acc + 0.01 * seed))
    return pl.DataFrame([(*r, 200, 5) for r in rows], schema=EVAL_SCHEMA, orient="row")


def make_timings() -> pl.DataFrame:
    rows = [("shared", s, 0, "train", 10.0) for s in (0, 1, 2)]
    rows += [("premem", s, 1, stage, sec) for s in (0, 1, 2) for stage, sec in (("train", 4.0), ("dynamics", 1.5))]
    rows += [("random", s, 1, "train", 4.0) for s in (0, 1, 2)]
    return pl.DataFrame(rows, schema=TIMING_SCHEMA, orient="row")


@pytest.fixture
def report(tmp_path: Path):
    index = write_report(
        make_evals(), make_timings(), tmp_path / "report",
        title="GSM8K <premem> run", config_summary={"model": "tiny", "tau": -2.4, "budgets": [100, 100]},
        notes=["tau calibrated on dev & <not> test"],
    )
    return index, json.loads((index.parent / "summary.json").read_text())


def test_writes_the_three_files_and_nothing_else(report):
    index, _ = report
    assert index.name == "index.html"
    assert sorted(p.name for p in index.parent.iterdir()) == ["curves.png", "index.html", "summary.json"]
    assert (index.parent / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_summary_has_the_documented_keys(report):
    _, summary = report
    assert summary["reference"] == "random" and summary["n_seeds"] == 3 and summary["seeds"] == [0, 1, 2]
    assert summary["created"].endswith("+00:00")
    assert {"title", "config", "notes", "warnings", "verdict", "shared_compute_seconds", "strategies"} <= set(summary)
    assert len(summary["verdict"]) == 1 and summary["verdict"][0].startswith("premem")
    assert set(summary["strategies"]) == {"premem", "random"}
    for block in summary["strategies"].values():
        assert {"points", "ratio", "ratios", "aulc", "deficiency", "compute_seconds"} <= set(block)
        assert all(set(p) == POINT_KEYS for p in block["points"])
        assert set(block["ratio"]) == RATIO_KEYS
        assert {"mean", "ci_low", "ci_high", "n_seeds", "diff_vs_reference", "n_min", "n_max"} <= set(block["aulc"])
        assert set(block["compute_seconds"]) == {"total", "per_seed", "by_stage"}


def test_summary_numbers_match_the_functions(report):
    _, summary = report
    ev = make_evals()
    pm = summary["strategies"]["premem"]
    assert pm["points"] == curve_points(ev).filter(pl.col("strategy") == "premem").drop("strategy").to_dicts()

    ratio = pm["ratio"]
    expected = strategy_ratios(ev).filter((pl.col("strategy") == "premem") & (pl.col("n_examples") == 400)).row(0, named=True)
    assert ratio["n_examples"] == 400  # the final budget
    for key in ("mean", "ci_low", "ci_high", "n_seeds", "se_log", "max_measurable"):
        assert ratio[key] == pytest.approx(expected[key])
    # The seeds' own ratios (each located alone on its fitted curve) lie around the pooled estimate.
    assert [p["seed"] for p in ratio["per_seed"]] == [0, 1, 2]
    assert min(p["ratio"] for p in ratio["per_seed"]) <= ratio["mean"] <= max(p["ratio"] for p in ratio["per_seed"])
    assert ratio["bound"] is None and ratio["max_measurable"] == pytest.approx(800 / 400)
    assert ratio["detectable_ratio"] > 1 and ratio["replicates_for_1_2x"] >= 2

    aulc = strategy_aulc(ev).filter(pl.col("strategy") == "premem").row(0, named=True)
    assert pm["aulc"]["mean"] == pytest.approx(aulc["aulc_mean"])
    assert pm["aulc"]["diff_vs_reference"]["mean"] == pytest.approx(aulc["diff_mean"])
    assert pm["deficiency"]["mean"] == pytest.approx(aulc["deficiency_mean"])
    assert summary["strategies"]["random"]["deficiency"]["mean"] == pytest.approx(1.0)

    assert pm["compute_seconds"] == {"total": 16.5, "per_seed": 5.5, "by_stage": {"dynamics": 4.5, "train": 12.0}}
    assert summary["shared_compute_seconds"]["total"] == 30.0


def test_html_is_self_contained_and_escaped(report):
    index, summary = report
    text = index.read_text()
    assert "GSM8K &lt;premem&gt; run" in text and "<premem>" not in text
    assert "tau calibrated on dev &amp; &lt;not&gt; test" in text
    png = text.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(png) == (index.parent / "curves.png").read_bytes()
    assert f"{summary['strategies']['premem']['ratio']['mean']:.2f}" in text


def test_rewrite_replaces_files_without_leftovers(tmp_path: Path):
    out = tmp_path / "r"
    for _ in range(2):
        write_report(make_evals(), make_timings(), out, title="t", config_summary={})
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "index.html", "summary.json"]


def test_report_without_reference_still_renders(tmp_path: Path):
    ev = make_evals().filter(pl.col("strategy") != "random")
    index = write_report(ev, make_timings().head(0), tmp_path, title="t", config_summary={})
    summary = json.loads((index.parent / "summary.json").read_text())
    assert summary["warnings"] and summary["strategies"]["premem"]["ratio"] is None
    assert summary["strategies"]["premem"]["compute_seconds"]["total"] == 0.0


def test_lower_bound_reaches_summary_as_null_free_json(tmp_path: Path):
    # premem beats random's best at its final budget on every seed: a lower bound, never NaN/inf.
    ev = make_evals().with_columns(
        pl.when((pl.col("strategy") == "premem") & (pl.col("round") == 2)).then(0.95).otherwise(pl.col("accuracy"))
        .alias("accuracy"))
    index = write_report(ev, make_timings(), tmp_path, title="t", config_summary={})
    text = (index.parent / "summary.json").read_text()
    ratio = json.loads(text)["strategies"]["premem"]["ratio"]
    assert ratio["bound"] == "lower" and ratio["mean"] == pytest.approx(2.0)  # 800 / 400
    assert ratio["ci_high"] is None and "at least 2.00x" in json.loads(text)["verdict"][0]
    assert "NaN" not in text and "Infinity" not in text


def test_plot_curves_writes_a_png(tmp_path: Path):
    path = plot_curves(curve_points(make_evals()), tmp_path / "c.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="empty"):
        plot_curves(curve_points(make_evals()).head(0), tmp_path / "d.png")


def test_reports_imports_no_training_or_orchestration_stack():
    code = "import sys, reports; bad = {'torch', 'transformers', 'prefect'} & set(sys.modules); assert not bad, bad"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
