"""The analysis sweep end to end on a tiny real model: every example sampled at every checkpoint, dev and test
accuracy per checkpoint, the robustness prefixes, resume without recomputation, the report's summary.json, and tau
calibration that never reads a test row. A curation run with `floor_scale: auto` calibrates in round 0."""

import json
import math

import polars as pl
import pytest

from loop.analysis.results import SweepTables, analysis_results
from loop.analysis.sweep import Sweep, plan_runs, run_dir
from loop.config import PRESET_DIR, build_config
from loop.run.engine import Engine
from reports.analysis import write_analysis_report
from tests.report_cases import sweep_as, thresholds

pytestmark = pytest.mark.integration


def config(model_dir, out, *extra):
    return build_config("analyze-default", overrides=[
        f"model.name_or_path={model_dir}", f"out_dir={out}", "data.n_seeds=6", "data.n_dev=6", "data.n_test=6",
        "dynamics.n_samples=2", "sampling.max_new_tokens=24", "train.batch_size=4", "torch_threads=1",
        "analysis.runs=[{learning_rate: 1.0e-3, epochs: 2}, {learning_rate: 1.0e-4, epochs: 1}, "
        "{learning_rate: 1.0e-3, epochs: 2, fraction: 0.5}]",
        "analysis.robustness={prefixes: [First, We know that], n_samples: 2, run: 0}", "analysis.n_boot=200",
        *extra])


@pytest.fixture(scope="module")
def sweep_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    Sweep(config(tiny_model_dir, out)).run_all(progress=False)
    return out


def test_every_example_is_measured_at_every_checkpoint(sweep_dir):
    cfg = SweepTables(sweep_dir).cfg
    runs = {(r.index): r for r in plan_runs(cfg)}
    for index, n_trained, epochs in ((0, 6, [1, 2]), (1, 6, [1]), (2, 3, [1, 2])):
        folder = run_dir(sweep_dir, runs[index])
        ledger = pl.read_parquet(folder / "ledger.parquet")
        assert ledger.height == n_trained * len(epochs) and sorted(ledger["epoch"].unique()) == epochs
        assert (ledger["n_samples"] == 2).all()  # sampled everywhere: acc_j is read at every checkpoint
        accuracy = pl.read_parquet(folder / "accuracy.parquet")
        assert sorted(accuracy.select("split", "epoch").rows()) == sorted(
            (s, e) for s in ("dev", "test") for e in epochs)
        assert (accuracy["n_questions"] == 6).all()
    robust = pl.read_parquet(run_dir(sweep_dir, runs[0]) / "robustness.parquet")
    assert sorted(robust["prefix"].unique()) == ["First", "We know that"] and robust.height == 12
    assert not (run_dir(sweep_dir, runs[1]) / "robustness.parquet").exists()


def test_a_finished_run_is_never_recomputed(sweep_dir, tiny_model_dir):
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("analysis/*/*/*.parquet")}
    Sweep(config(tiny_model_dir, sweep_dir)).run_all(progress=False)
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("analysis/*/*/*.parquet")} == before


def test_report_has_the_summary_the_issue_names(sweep_dir):
    index = write_analysis_report(sweep_dir)
    summary = json.loads((index.parent / "summary.json").read_text())
    g = summary["generalization"]
    assert g["n_runs"] == 3 and g["n_points"] == 5 and len(g["points"]) == 5
    for key in ("r2_identity", "r2_fit", "r2_train_acc"):
        assert set(g[key]) == {"value", "ci_low", "ci_high", "n_runs", "n_points"}
    tau = summary["tau"]
    assert tau["parameter"] == "floor_scale" and tau["auto"] and tau["used"] == tau["calibrated"] > 0
    assert len(tau["curve"]) == 61 and {"r2_dev", "r2_test"} <= set(tau["curve"][0])
    bins = summary["robustness"]["bins"]
    assert len(bins) == 5 * 3 and {b["condition"] for b in bins} == {"unperturbed", "First", "We know that"}
    assert sum(b["n_examples"] for b in bins if b["condition"] == "unperturbed") == 6
    for name in ("prediction.png", "tau.png", "robustness.png", "heatmap.png"):
        assert (index.parent / name).stat().st_size > 1000


def test_calibration_never_reads_a_test_row(sweep_dir, tmp_path):
    """Garble every stored test accuracy: the calibrated threshold stays, while the test R^2 moves."""
    import shutil

    copy = tmp_path / "garbled"
    shutil.copytree(sweep_dir, copy)
    for path in copy.glob("analysis/*/*/accuracy.parquet"):
        frame = pl.read_parquet(path)
        garbled = frame.with_columns(accuracy=pl.when(pl.col("split") == "test")
                                     .then(1.0 - pl.col("accuracy") * 0.5).otherwise(pl.col("accuracy")))
        garbled.write_parquet(path)
    original, changed = analysis_results(SweepTables(sweep_dir)), analysis_results(SweepTables(copy))
    assert changed["tau"]["calibrated"] == original["tau"]["calibrated"]
    assert [c["mse_dev"] for c in changed["tau"]["curve"]] == [c["mse_dev"] for c in original["tau"]["curve"]]
    assert [c["test_accuracy"] for c in changed["generalization"]["points"]] != [
        c["test_accuracy"] for c in original["generalization"]["points"]]


def test_curation_with_auto_threshold_calibrates_in_round_zero(tiny_model_dir, tmp_path):
    cfg = build_config("smoke", overrides=[
        f"model.name_or_path={tiny_model_dir}", f"out_dir={tmp_path}", "dynamics.floor_scale=auto", "data.n_seeds=6",
        "data.n_dev=6", "data.n_test=6", "selection.budgets=[4]", "selection.strategies=[random, premem]",
        "sampling.max_new_tokens=24", "torch_threads=1", "workers=1"])
    Engine(cfg).run_all(progress=False)
    step = tmp_path / "steps" / "seed-0" / "shared" / "round-0"
    record = json.loads((step / "step.json").read_text())["tau_calibration"]
    assert record["parameter"] == "floor_scale" and record["value"] == pytest.approx(math.exp(record["shift"]))
    assert pl.read_parquet(step / "tau_curve.parquet").height == 61
    ledger = pl.read_parquet(step / "ledger.parquet")
    assert (ledger["n_samples"] == 2).all()  # every checkpoint sampled: calibration reads acc_j throughout
    # Round 1 reads the calibrated threshold: its ledger's flags are those of floor_scale = value.
    engine = Engine(cfg).context
    tau = engine.tau(0)
    expected = engine.examples(0).select(
        "id", (pl.col("style_floor") * record["value"]).log().alias("expected"))
    got = tau.join(expected, left_on="example_id", right_on="id")
    assert ((got["tau"] - got["expected"]).abs() < 1e-9).all()


def test_answer_prefix_extends_the_training_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    from loop.model.formatting import encode_prompt, prompt_text

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = encode_prompt(tok, "What is 2 + 3?")
    forced = encode_prompt(tok, "What is 2 + 3?", answer_prefix="We know that")
    assert forced == tok(prompt_text("What is 2 + 3?") + " We know that")["input_ids"]
    assert forced[: len(plain)] == plain and len(forced) > len(plain)


def analysis_cases() -> list[tuple[str, list[str]]]:
    """Every analysis preset under every threshold setting its task allows, at 3 replicates; and 1 and 2 replicates
    of the first."""
    presets = sorted(p.stem for p in PRESET_DIR.glob("analyze-*.yaml"))
    cases = [(p, [*t, "seeds=[0, 1, 2]"]) for p in presets for t in thresholds(p)]
    return cases + [(presets[0], [*thresholds(presets[0])[0], f"seeds={s}"]) for s in ("[0]", "[0, 1]")]


@pytest.mark.parametrize(("preset", "overrides"), analysis_cases(),
                         ids=[f"{p}-{o[0][18:]}-{o[1].split('=')[1]}-{o[-1][6:]}" for p, o in analysis_cases()])
def test_every_analysis_preset_and_threshold_setting_ends_in_a_report(sweep_dir, tmp_path, preset, overrides):
    """The sweep's tables, read under each analysis preset's config (its model, data and threshold): a report,
    with the threshold it used stated in the config's own terms."""
    stored = SweepTables(sweep_dir).cfg
    runs = [r.model_dump() for r in stored.analysis.runs]
    cfg = build_config(preset, overrides=[*overrides, f"analysis.runs={json.dumps(runs)}",
                                          f"analysis.robustness={json.dumps(stored.analysis.robustness.model_dump())}",
                                          "analysis.n_boot=200"])
    index = write_analysis_report(sweep_as(sweep_dir, tmp_path / "sweep", cfg))
    summary = json.loads((index.parent / "summary.json").read_text())
    tau = summary["tau"]
    assert tau["parameter"] == ("tau" if cfg.dynamics.tau_mode == "absolute" else "floor_scale")
    assert tau["auto"] == cfg.dynamics.auto_tau and tau["used"] is not None
    assert summary["generalization"]["n_runs"] == 3 * len(cfg.seeds)
