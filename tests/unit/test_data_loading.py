"""`loop.data`: roles cut from splits, pools linked to seeds, invalid rows and contamination stopped (or
skipped, dropped) before any training, on small hand-made files and, where present, on ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from loop.config import RunConfig, build_config
from loop.data.checks import check_examples
from loop.data.contamination import ContaminatedDataError
from loop.data.load import load_data, load_examples
from loop.embedded.task import make_task
from loop.data.sources import SourceUnavailableError
from loop.data.validation import DataValidationError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NEEDS = {"premem"}


def problem(i: int) -> dict:
    # Distinct words per problem, so no two questions are near-duplicates under TF-IDF.
    return {"q": f"Problem {i}: how many apples does basket{i} with {i} apples and {i % 7} pears{i} hold?",
            "sol": f"basket{i} holds {i} apples.\n#### {i}"}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "train.jsonl", [problem(i) for i in range(40)])
    write_jsonl(tmp_path / "test.jsonl", [problem(i) for i in range(100, 110)])
    return tmp_path


def config(folder: Path, budgets=(4,), **data) -> RunConfig:
    base = {"source": "file", "path": str(folder), "columns": {"question": "q", "solution": "sol"},
            "splits": {"seed": "train", "pool": "train", "test": "test"}, "seed_limit": 10, "link": "tfidf"}
    return RunConfig.model_validate({"task": "gsm8k", "data": {**base, **data},
                                     "selection": {"budgets": list(budgets), "iid_extra_budgets": []}})


def by_split(frame: pl.DataFrame) -> dict[str, list[str]]:
    return {s: frame.filter(pl.col("split") == s)["id"].to_list() for s in ("seed", "pool", "dev", "test")}


def test_the_embedded_data_is_what_it_always_was():
    cfg = build_config("smoke")
    d = cfg.data
    assert load_examples(cfg).equals(make_task(n_seeds=d.n_seeds, pool_per_seed=d.pool_per_seed, n_dev=d.n_dev,
                                               n_test=d.n_test, min_steps=d.min_steps, max_steps=d.max_steps,
                                               seed=d.data_seed))


def test_roles_sharing_a_split_are_disjoint_seeded_slices(folder):
    cfg = config(folder, dev_limit=5, pool_limit=12, splits={"seed": "train", "pool": "train", "dev": "train",
                                                             "test": "test"})
    frame, report = load_data(cfg)
    ids = by_split(frame)
    assert [len(ids[s]) for s in ("seed", "pool", "dev", "test")] == [10, 12, 5, 10]
    assert report.counts == {"seed": 10, "pool": 12, "dev": 5, "test": 10}
    assert not set(ids["seed"]) & set(ids["pool"]) and not set(ids["dev"]) & set(ids["seed"] + ids["pool"])
    assert ids["seed"] == sorted(ids["seed"])  # file order within a role
    assert frame["answer"].null_count() == 0 and frame.schema["split"] == pl.String
    assert by_split(load_data(cfg)[0]) == ids
    other = cfg.model_copy(update={"data": cfg.data.model_copy(update={"data_seed": 1})})
    assert by_split(load_data(other)[0])["seed"] != ids["seed"]
    # The test split is a role of its own: all of it, in file order, under the file's own ids.
    assert ids["test"] == [f"test-{n:06d}" for n in range(1, 11)]
    check_examples(cfg, frame, NEEDS)


def test_a_pool_cut_from_the_seed_split_is_linked_to_nearest_seeds_with_the_similarity(folder):
    frame, report = load_data(config(folder))
    pool = frame.filter(pl.col("split") == "pool")
    assert pool.height == 30 and report.linked_nearest == 30
    seeds = set(frame.filter(pl.col("split") == "seed")["id"].to_list())
    assert set(pool["seed_id"].to_list()) <= seeds
    assert pool["link_similarity"].is_between(0.0, 1.0).all()


def test_an_unlinked_pool_stops_premem_and_says_how_to_link_it(folder):
    cfg = config(folder, link="none")
    frame, _ = load_data(cfg)
    assert frame.filter(pl.col("split") == "pool")["seed_id"].null_count() == 30
    with pytest.raises(ValueError, match="has no seed_id naming a seed; set data.link: tfidf"):
        check_examples(cfg, frame, NEEDS)
    check_examples(cfg, frame, set())  # pool-level signals alone need no links


def test_sharing_a_split_needs_the_limits_that_divide_it(folder):
    with pytest.raises(ValueError, match="seed, pool share the split 'train'; set data.seed_limit"):
        load_data(config(folder, seed_limit=None))
    with pytest.raises(ValueError, match="has 40 valid rows; data.dev_limit 30 \\+ data.seed_limit 10 leave none"):
        load_data(config(folder, dev_limit=30, splits={"seed": "train", "pool": "train", "dev": "train",
                                                       "test": "test"}))


def test_one_file_is_cut_into_every_role(folder):
    cfg = config(folder / "train.jsonl", seed_limit=10, test_limit=8, splits={"seed": "all", "pool": "all",
                                                                              "test": "all"})
    ids = by_split(load_data(cfg)[0])
    assert [len(ids[s]) for s in ("seed", "pool", "test")] == [10, 22, 8]
    assert len(set(ids["seed"] + ids["pool"] + ids["test"])) == 40


def test_a_bad_row_names_file_line_and_field_or_is_skipped_and_counted(folder):
    rows = [problem(i) for i in range(40)]
    rows[6] = {"q": "  ", "sol": "#### 1"}
    rows[11] = '{"q": "broken'
    rows[20] = {"q": "What is it?", "sol": "no final answer here"}
    write_jsonl(folder / "train.jsonl", rows)
    with pytest.raises(DataValidationError) as err:
        load_data(config(folder))
    text = str(err.value)
    train = folder / "train.jsonl"
    assert f"{train}:7: field 'question' is empty" in text
    assert f"{train}:12: field '<row>' could not be parsed" in text
    assert f"{train}:21: field 'solution' has no final answer" in text
    frame, report = load_data(config(folder, skip_invalid=True))
    assert [v.skipped for v in report.validation] == [0, 3]  # test, then train (cut order)
    assert frame.filter(pl.col("split") != "test").height == 37


def test_a_mapped_column_that_is_absent_is_named(folder):
    with pytest.raises(ValueError, match="mapped columns not found: 'question' \\(for question\\)"):
        load_data(config(folder, columns={"solution": "sol"}))


def test_a_missing_split_file_is_named(folder):
    with pytest.raises(FileNotFoundError, match="no file for split 'validation'"):
        load_data(config(folder, splits={"seed": "train", "pool": "train", "dev": "validation", "test": "test"}))


def test_ids_must_be_unique_across_files(folder):
    write_jsonl(folder / "train.jsonl", [{**problem(i), "uid": str(i)} for i in range(40)])
    write_jsonl(folder / "test.jsonl", [{**problem(i), "uid": str(i - 100)} for i in range(100, 110)])
    with pytest.raises(ValueError, match=r"id '\d+' is used by 2 rows .*unique across splits"):
        load_data(config(folder, columns={"question": "q", "solution": "sol", "id": "uid"}))


def test_a_seed_linked_pool_keeps_the_links_it_names(folder):
    """A MetaMathQA-like pool: each row names its original question; rows of seeds outside the seed
    slice, and rows naming no seed at all, are dropped and counted."""
    seeds = [problem(i) for i in range(40)]
    rows = [{"query": f"Rephrased: {s['q']}", "response": f"So {s['sol']}", "original_question": s["q"]}
            for s in seeds]
    rows.append({"query": "A geometry question?", "response": "#### 3", "original_question": "Not a seed?"})
    pool = write_jsonl(folder / "rephrased.jsonl", rows)
    cfg = config(folder, splits={"seed": "train", "test": "test"}, seed_limit=10, link="none", pool={
        "source": "file", "path": str(pool),
        "columns": {"question": "query", "solution": "response", "seed_question": "original_question"}})
    frame, report = load_data(cfg)
    seeds_kept = frame.filter(pl.col("split") == "seed")
    pool_kept = frame.filter(pl.col("split") == "pool")
    assert pool_kept.height == 10 and pool_kept["seed_id"].null_count() == 0
    by_q = dict(zip(seeds_kept["question"], seeds_kept["id"]))
    assert [by_q[q] for q in pool_kept["seed_question"]] == pool_kept["seed_id"].to_list()
    assert pool_kept["link_similarity"].is_null().all() if "link_similarity" in pool_kept.columns else True
    assert sorted(report.dropped.values()) == [1, 30]
    check_examples(cfg, frame, NEEDS)


def test_a_pool_naming_an_unknown_seed_id_is_refused_with_its_line(folder):
    rows = [{**problem(200 + i), "parent": f"train-{i + 1:06d}"} for i in range(5)]
    rows[3]["parent"] = "train-999999"
    pool = write_jsonl(folder / "pool.jsonl", rows)
    cfg = config(folder, splits={"seed": "train", "test": "test"}, seed_limit=None, pool={
        "source": "file", "path": str(pool), "columns": {"question": "q", "solution": "sol", "seed_id": "parent"}})
    with pytest.raises(DataValidationError, match=f"{pool}:4: field 'seed_id' names no seed: 'train-999999'"):
        load_data(cfg)


def contaminated(folder: Path) -> Path:
    """Train row 3 repeats test row 1 exactly; train row 5 is test row 2 with a comma added."""
    rows = [problem(i) for i in range(40)]
    rows[2] = problem(100)
    rows[4] = {**problem(101), "q": problem(101)["q"].replace("apples and", "apples, and")}
    write_jsonl(folder / "train.jsonl", rows)
    return folder


def test_contamination_is_refused_by_default_naming_the_pairs_and_the_way_out(folder):
    cfg = config(contaminated(folder), seed_limit=30)
    with pytest.raises(ContaminatedDataError) as err:
        load_data(cfg)
    text = str(err.value)
    assert "train-000003 ~ test-000001 (exact" in text and "train-000005 ~ test-000002 (near" in text
    assert "data.contamination: drop" in text
    assert set(err.value.pairs["train_id"]) == {"train-000003", "train-000005"}


def test_drop_removes_the_train_side_and_the_pool_items_of_a_dropped_seed(folder):
    cfg = config(contaminated(folder), seed_limit=30, contamination="drop")
    frame, report = load_data(cfg)
    assert not {"train-000003", "train-000005"} & set(frame["id"].to_list())
    assert frame.filter(pl.col("split") == "test").height == 10
    assert sum(report.dropped.values()) == 2 and report.contamination.height == 2
    check_examples(cfg, frame, set())


def test_drop_takes_the_named_pool_items_of_a_dropped_seed_with_it(folder):
    rows = [{**problem(300 + i), "parent": f"train-{i + 1:06d}"} for i in range(40)]
    pool = write_jsonl(folder / "pool.jsonl", rows)
    cfg = config(contaminated(folder), splits={"seed": "train", "test": "test"}, seed_limit=None, link="none",
                 contamination="drop", pool={"source": "file", "path": str(pool),
                                             "columns": {"question": "q", "solution": "sol", "seed_id": "parent"}})
    frame, report = load_data(cfg)
    kept = frame.filter(pl.col("split") == "pool")
    assert kept.height == 38 and not {"train-000003", "train-000005"} & set(kept["seed_id"].to_list())
    assert report.dropped["pool items of a seed dropped for contamination"] == 2
    check_examples(cfg, frame, NEEDS)


def test_allow_keeps_them_and_a_stored_frame_is_checked_again(folder):
    allowed = config(contaminated(folder), seed_limit=30, contamination="allow")
    frame, _ = load_data(allowed)
    assert {"train-000003", "train-000005"} <= set(frame["id"].to_list())
    check_examples(allowed, frame, set())
    # The same rows read back from a run store under refuse are stopped by check_examples.
    refuse = config(folder, seed_limit=30)
    with pytest.raises(ContaminatedDataError, match="2 pairs"):
        check_examples(refuse, frame, set())


def test_budgets_beyond_the_pool_are_named_with_the_fields_that_size_it(folder):
    cfg = config(folder, budgets=(20, 20))
    frame, _ = load_data(cfg)
    with pytest.raises(ValueError, match="add 40 pool items but the pool holds 30 .*data.pool_limit"):
        check_examples(cfg, frame, NEEDS)


def test_the_hub_out_of_reach_with_no_path_says_how_to_give_one():
    cfg = RunConfig.model_validate({"task": "gsm8k", "data": {"source": "gsm8k", "splits": {"pool": "train"},
                                                              "seed_limit": 10}})
    with pytest.raises(SourceUnavailableError, match="openai/gsm8k.*pass its local folder as `path`"):
        load_data(cfg)


@pytest.mark.skipif(not (DATA / "gsm8k" / "train.jsonl").is_file(), reason="../shared/data/gsm8k absent")
def test_the_gsm8k_preset_on_the_published_files():
    cfg = build_config("gsm8k", overrides=[f"data.path={DATA / 'gsm8k'}"])
    frame, report = load_data(cfg)
    assert report.counts == {"seed": 1000, "pool": 6273, "dev": 200, "test": 1319}
    assert report.linked_nearest == 6273 and not report.dropped
    check_examples(cfg, frame, NEEDS)


@pytest.mark.skipif(not (DATA / "math" / "train.jsonl").is_file(), reason="../shared/data/math absent")
def test_math_levels_1_3_refuse_names_the_62_published_near_duplicates_and_the_preset_drops_them():
    refuse = build_config("math", overrides=[f"data.path={DATA / 'math'}", "data.contamination=refuse",
                                             "data.seed_limit=3104"])  # every train row is a seed or dev item
    with pytest.raises(ContaminatedDataError) as err:
        load_data(refuse)
    pairs = err.value.pairs
    assert pairs.height == 62
    text = str(err.value)
    assert all(f"{r['train_id']} ~ {r['test_id']}" in text for r in pairs.iter_rows(named=True))
    assert "data.contamination: drop" in text

    cfg = build_config("math", overrides=[f"data.path={DATA / 'math'}"])
    frame, report = load_data(cfg)
    assert report.counts["test"] == 2462 and set(frame["level"].unique().to_list()) == {1, 2, 3}
    assert report.contamination.height > 0 and sum(report.dropped.values()) > 0
    assert report.counts["pool"] >= sum(cfg.selection.budgets) + sum(cfg.selection.extension(report.counts["seed"]))
    check_examples(cfg, frame, NEEDS)
