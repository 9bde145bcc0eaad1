"""The run config: unknown keys and impossible values stop before any training, naming the field."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from loop.config import PRESET_DIR, RunConfig, build_config, parse_override


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESET_DIR.rglob("*.yaml")))
def test_every_preset_validates(preset):
    cfg = build_config(preset)
    assert cfg.seeds and "random" in cfg.selection.strategy_names


def test_unknown_key_is_named():
    with pytest.raises(ValidationError, match="train.epoch"):
        RunConfig.model_validate({"train": {"epoch": 3}})
    with pytest.raises(ValidationError, match="learning_rat"):
        build_config("smoke", overrides=["train.learning_rat=1e-3"])


@pytest.mark.parametrize("override, field", [
    ("selection.budgets=[10000]", "budgets"),
    ("dynamics.tau=.nan", "tau"),
    ("dynamics.tau=.inf", "tau"),
    ("seeds=[]", "seeds"),
    ("train.epochs=0", "epochs"),
    ("selection.budgets=[0]", "budgets"),
])
def test_impossible_values_are_named(override, field):
    with pytest.raises(ValidationError, match=field):
        build_config("smoke", overrides=[override])


def test_preset_then_file_then_overrides(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: smoke\ntrain: {epochs: 3}\nseeds: [4]\n")
    cfg = build_config(config_file=f, overrides=["seeds=[5, 6]"])
    assert cfg.train.epochs == 3 and cfg.seeds == [5, 6] and cfg.name == "smoke"


def test_preset_key_in_a_flow_parameter_merges_under_given_keys():
    cfg = RunConfig.model_validate({"preset": "smoke", "out_dir": "/tmp/x", "train": {"epochs": 5}})
    assert cfg.out_dir == "/tmp/x" and cfg.train.epochs == 5 and cfg.data.n_seeds == 16


def test_random_is_always_run_and_strategies_accept_names():
    cfg = RunConfig.model_validate({"selection": {"strategies": ["premem"], "budgets": [8]}})
    assert cfg.selection.strategy_names == ["random", "premem"]


def test_parse_override_types():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("seeds=[1,2]") == {"seeds": [1, 2]}
    with pytest.raises(ValueError, match="key.sub=value"):
        parse_override("nonsense")


def test_the_iid_curve_extends_to_its_reach_in_two_geometric_rounds():
    from loop.config import SelectionConfig

    sel = SelectionConfig(budgets=[24, 24])
    # 32 seeds + 48 = 80 examples at the end; 3x = 240, reached through sqrt(80 * 240) = 138.6 -> 139.
    assert sel.extension(32) == [59, 101] and sel.iid_rounds == 2
    assert SelectionConfig(budgets=[24, 24], iid_reach=1.0).extension(32) == []
    assert SelectionConfig(budgets=[24], iid_extra_budgets=[]).extension(32) == []
    assert SelectionConfig(budgets=[24], iid_extra_budgets=[5, 7]).extension(999) == [5, 7]
    with pytest.raises(ValidationError, match="the i.i.d. extension"):
        build_config("default", overrides=["data.pool_per_seed=5"])  # 16 x 5 = 80 pool items < 32 + 96


def test_tracking_names_known_trackers_and_is_not_stored():
    from loop.store import NOT_STORED

    assert build_config("smoke").tracking.report_to == []  # default: no tracker, as before the section existed
    assert build_config("smoke", overrides=["tracking.report_to=tensorboard"]).tracking.report_to == ["tensorboard"]
    with pytest.raises(ValidationError, match=r"tracking\.report_to(.|\n)*'tensorbord'(.|\n)*known: tensorboard"):
        build_config("smoke", overrides=["tracking.report_to=[tensorbord]"])
    with pytest.raises(ValidationError, match="twice"):
        build_config("smoke", overrides=["tracking.report_to=[wandb, wandb]"])
    with pytest.raises(ValidationError, match="logging_steps"):
        build_config("smoke", overrides=["tracking.logging_steps=0"])
    assert "tracking" in NOT_STORED  # trackers watch a run: a resume may name others
