"""The data part of the run config: each source takes only its own fields, validates offline, and dumps
(for the run store) only its own fields, so an embedded run's stored config is what it always was."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loop.config import SOURCE_FIELDS, RunConfig, build_config

EMBEDDED_KEYS = ["source", "n_seeds", "pool_per_seed", "n_dev", "n_test", "min_steps", "max_steps", "data_seed",
                 "per_replicate"]


def gsm8k(**data) -> dict:
    return {"task": "gsm8k", "data": {"source": "gsm8k", "splits": {"pool": "train"}, "seed_limit": 100, **data}}


def test_real_presets_validate_offline_with_the_papers_settings():
    g, m = build_config("gsm8k"), build_config("math")
    assert (g.task, g.data.source, g.dynamics.tau, g.data.contamination) == ("gsm8k", "gsm8k", -2.4, "refuse")
    assert (m.task, m.data.source, m.dynamics.tau, m.data.levels) == ("math", "math", -1.7, [1, 2, 3])
    # The published MATH 1-3 train/test splits share near-duplicates: refuse would stop every run.
    assert m.data.contamination == "drop"
    for cfg in (g, m):
        assert cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B" and cfg.data.path is None
        assert (cfg.train.epochs, cfg.train.learning_rate, cfg.dynamics.n_samples) == (3, 2e-5, 10)
        assert cfg.sampling.temperature == 0.8 and cfg.data.link == "tfidf"
        assert cfg.data.splits.pool == "train" and cfg.data.seed_limit and cfg.data.dev_limit


def test_embedded_presets_dump_exactly_the_embedded_keys():
    for preset in ("default", "smoke"):
        data = build_config(preset).model_dump(mode="json")["data"]
        assert list(data) == EMBEDDED_KEYS


@pytest.mark.parametrize("source, task, extra", [
    ("gsm8k", "gsm8k", {"path": "somewhere"}),
    ("math", "math", {"levels": "all", "name": "EleutherAI/hendrycks_math"}),
    ("file", "gsm8k", {"path": "d", "columns": {"question": "q", "solution": "a", "id": "uid"}}),
    ("hf", "math", {"name": "org/set", "config": "c", "revision": "abc", "columns": {"question": "problem"}}),
])
def test_real_sources_round_trip_through_their_dump(source, task, extra):
    cfg = RunConfig.model_validate({"task": task, "data": {"source": source, "splits": {"pool": "train"},
                                                           "seed_limit": 10, **extra}})
    data = cfg.model_dump(mode="json")["data"]
    assert set(data) <= set(SOURCE_FIELDS[source]) and "n_seeds" not in data
    assert RunConfig.model_validate(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize("data, named", [
    ({"n_seeds": 10}, "data.n_seeds does not apply to data.source 'gsm8k'"),
    ({"columns": {"question": "q"}}, "data.columns does not apply"),
    ({"levels": [1]}, "data.levels does not apply"),
    ({"name": "openai/gsm8k"}, "data.name does not apply"),
])
def test_fields_of_another_source_are_named(data, named):
    with pytest.raises(ValidationError, match=named):
        RunConfig.model_validate(gsm8k(**data))


def test_an_embedded_preset_under_a_real_source_is_refused_naming_its_keys():
    with pytest.raises(ValidationError, match="data.n_seeds, data.pool_per_seed.*preset gsm8k"):
        build_config("smoke", overrides=["task=gsm8k", "data.source=gsm8k", "data.splits.pool=train"])


def test_real_fields_on_embedded_are_refused():
    with pytest.raises(ValidationError, match="data.contamination does not apply to data.source 'embedded'"):
        build_config("smoke", overrides=["data.contamination=drop"])


@pytest.mark.parametrize("task, source", [("embedded", "gsm8k"), ("gsm8k", "math"), ("math", "embedded")])
def test_the_task_must_grade_the_source(task, source):
    data = {"source": source} if source == "embedded" else {"source": source, "splits": {"pool": "train"}}
    with pytest.raises(ValidationError, match=f"set task: {source}"):
        RunConfig.model_validate({"task": task, "data": data})


@pytest.mark.parametrize("data, named", [
    ({"source": "file", "splits": {"pool": "train"}}, "data.path is required"),
    ({"source": "hf", "splits": {"pool": "train"}}, "data.name .* is required"),
    ({"source": "hf", "name": "x", "path": "y", "splits": {"pool": "train"}}, "data.path does not apply"),
    ({"source": "gsm8k"}, "data gives no pool"),
    ({"source": "gsm8k", "splits": {"pool": "train"}, "pool": {"source": "file", "path": "p.jsonl"}}, "keep one"),
    ({"source": "gsm8k", "pool": {"source": "file"}}, "data.pool.path is required"),
    ({"source": "gsm8k", "pool": {"source": "hf"}}, "data.pool.name"),
    ({"source": "gsm8k", "pool": {"source": "hf", "name": "m", "path": "p"}}, "data.pool.path applies"),
    ({"source": "gsm8k", "pool": {"source": "file", "path": "p", "name": "m"}}, "data.pool.name applies"),
    ({"source": "math", "splits": {"pool": "train"}, "levels": [0, 6]}, "levels 1..5"),
    ({"source": "math", "splits": {"pool": "train"}, "levels": []}, "levels 1..5"),
    ({"source": "file", "path": "d", "splits": {"pool": "train"}, "columns": {"seed_question": "oq"}},
     "data.pool.columns"),
    ({"source": "gsm8k", "splits": {"pool": " "}}, "data.splits.pool must name a split"),
    ({"source": "gsm8k", "splits": {"pool": "train"}, "seed_limit": 0}, "seed_limit"),
    ({"source": "gsm8k", "splits": {"pool": "train"}, "dev_limit": 5}, "data.splits.dev names no split"),
    ({"source": "gsm8k", "splits": {"pool": "train"}, "near_duplicate_threshold": 1.5}, "near_duplicate_threshold"),
    ({"source": "gsm8k", "splits": {"pool": "train"}, "contamination": "ignore"}, "contamination"),
    ({"source": "gsm8k", "splits": {"pool": "train"}, "link": "bm25"}, "link"),
])
def test_impossible_data_configs_are_named(data, named):
    task = {"file": "gsm8k", "hf": "gsm8k"}.get(data["source"], data["source"])
    with pytest.raises(ValidationError, match=named):
        RunConfig.model_validate({"task": task, "data": data})


def test_budgets_are_checked_against_the_pool_only_for_embedded():
    # A real pool's size is known once loaded; loop.data.checks.check_examples checks it then.
    cfg = RunConfig.model_validate({**gsm8k(), "selection": {"budgets": [10**6]}})
    assert cfg.selection.budgets == [10**6]
    with pytest.raises(ValidationError, match="budgets"):
        build_config("smoke", overrides=["selection.budgets=[10000]"])


def test_a_metamathqa_pool_config():
    cfg = RunConfig.model_validate(gsm8k(splits={"pool": None}, pool={
        "source": "hf", "name": "meta-math/MetaMathQA", "split": "train",
        "columns": {"question": "query", "solution": "response", "seed_question": "original_question"}}))
    assert cfg.data.pool.columns.seed_question == "original_question" and cfg.data.split_of("pool") is None
    assert cfg.data.limit_of("seed") == 100 and cfg.data.limit_of("pool") is None
