"""The report against the config space: every preset, every threshold setting (tau or floor_scale, fixed or `auto`),
1, 2 and 3 replicates, and ratios that are exact, lower bounds, upper bounds, censored both ways and undefined. The
run stores are hand-made (`tests.report_cases`); a report that crashes on any of them fails here. The analysis
report's counterpart runs on a real sweep (tests/integration/test_analysis_sweep.py)."""

import json

import pytest

from loop.config import PRESET_DIR, build_config
from reports.run import write_run_report
from tests.report_cases import thresholds, write_finished_run

CURATION_PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml") if not p.stem.startswith("analyze-"))


CASES = [(p, t) for p in CURATION_PRESETS for t in thresholds(p)]


def report(tmp_path, preset, overrides, **kwargs) -> dict:
    cfg = build_config(preset, overrides=[f"out_dir={tmp_path / 'run'}", *overrides])
    root = write_finished_run(tmp_path / "run", cfg, **kwargs)
    index = write_run_report(root)
    assert index.exists() and index.read_text().endswith("</html>\n")
    return json.loads((root / "report" / "summary.json").read_text())


@pytest.mark.parametrize(("preset", "threshold"), CASES, ids=[f"{p}-{t[0][18:]}-{t[1].split('=')[1]}"
                                                              for p, t in CASES])
def test_every_preset_and_threshold_setting_ends_in_a_report(tmp_path, preset, threshold):
    summary = report(tmp_path, preset, threshold)
    cfg = build_config(preset)
    assert set(cfg.selection.strategy_names) <= set(summary["strategies"])
    note = summary["notes"][0]
    assert note.startswith("Memorized iff")
    if threshold[1].endswith("auto"):  # the value each replicate calibrated, by seed
        assert "calibrated on the dev split per replicate" in note
        assert all(f"seed {s}:" in note for s in cfg.seeds)
    else:
        assert "auto" not in note and "calibrated" not in note


@pytest.mark.parametrize("replicates", [1, 2, 3])
@pytest.mark.parametrize("flat", [False, True], ids=["rising", "flat"])
def test_every_kind_of_ratio_at_every_replicate_count(tmp_path, replicates, flat):
    """smoke with auto (which stops before its last round), the paper's baselines and the compute-matched
    reference: the non-random strategies take the regimes exact, lower, upper and mixed in turn."""
    seeds = list(range(replicates))
    strategies = ("[random, premem, loss, perplexity, ifd, {name: auto, params: {arms: [premem, loss]}}]")
    summary = report(tmp_path, "smoke", [f"seeds={seeds}", f"selection.strategies={strategies}",
                                         "selection.budgets=[8, 8]", "selection.iid_extra_budgets=[16, 32]",
                                         "data.pool_per_seed=4", "selection.compute_matched=true"],
                     flat=flat, auto_stops=True)
    bounds = {name: (s["ratio"] or {}).get("bound") for name, s in summary["strategies"].items()}
    if flat:
        assert set(bounds.values()) - {None} == {"undefined"} and any("undefined" in w for w in summary["warnings"])
        assert all("no ratio" in v for v in summary["verdict"])
    else:
        assert bounds["premem"] is None  # exact
        assert bounds["loss"] == "lower" and bounds["perplexity"] == "upper"
        # Censored both ways across replicates: each replicate's own ratio is a bound of its own kind.
        per_seed = {p["bound"] for p in summary["strategies"]["ifd"]["ratio"]["per_seed"]}
        assert per_seed == ({"lower", "upper"} if replicates > 1 else {"lower"})
    assert len(summary["verdict"]) == len(summary["strategies"]) - 1  # one sentence per strategy but random
    if not flat and replicates > 1:  # round 0 is one model for every strategy: exactly 1, and never flagged
        for block in summary["strategies"].values():
            first = block["ratios"][0]
            assert (first["mean"], first["ci_low"], first["ci_high"], first["flagged"]) == (
                pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0), False)
    decisions = next(t for t in summary["tables"] if t["title"].startswith("Decisions"))
    stopped_by = decisions["columns"].index("stopped by")
    assert {row[stopped_by] for row in decisions["rows"]} == {"", "plateau"}  # the stopped round is in the table
