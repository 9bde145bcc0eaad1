"""The embedded task generator: deterministic, well linked, arithmetically right, phrasing entropy accounted for."""

import math
import re

import numpy as np
import polars as pl
import pytest

from loop.embedded.task import (
    ADD_VERBS, DOUBLE_VERB, MAX_VALUE, MIN_VARIANTS, SUB_VERBS, answer_of, draw_problem, make_task,
    pretraining_text, siblings, style_entropy, valid_numbers,
)
from loop.schema import EXAMPLE_SCHEMA, SPLITS

# One step in any of the four phrasings: "7+3=10", "7 + 3 = 10", "7+3 is 10", "7+3: 10".
STEP = re.compile(r"(\d+) ?([+*-]) ?(\d+)(?: = |=| is |: )(\d+)")
QUESTION = re.compile(r"^(\w+) has (\d+) (\w+)\. (?:She|He) (.+)\. How many \3 does (?:she|he) have now\?$")


@pytest.fixture(scope="module")
def task():
    return make_task(n_seeds=40, pool_per_seed=5, n_dev=30, n_test=60, seed=3)


def replay_question(question: str) -> int:
    """The answer recomputed from the question text alone."""
    match = QUESTION.match(question)
    assert match, question
    value = int(match.group(2))
    for op in match.group(4).split(", "):
        if op == DOUBLE_VERB:
            value *= 2
        else:
            verb, n = op.rsplit(" ", 1)
            value = value + int(n) if verb in ADD_VERBS else value - int(n)
            assert verb in ADD_VERBS + SUB_VERBS, op
        assert 0 <= value <= MAX_VALUE, question
    return value


def test_contract_columns_and_types(task):
    for col, dtype in EXAMPLE_SCHEMA.items():
        assert task.schema[col] == dtype, col
    assert task.schema["steps"] == pl.Int64 and task.schema["style_floor"] == pl.Float64
    assert set(task["split"].unique()) <= set(SPLITS)
    counts = dict(task.group_by("split").len().iter_rows())
    assert counts == {"seed": 40, "pool": 200, "dev": 30, "test": 60}


def test_deterministic_for_a_seed(task):
    assert make_task(n_seeds=40, pool_per_seed=5, n_dev=30, n_test=60, seed=3).equals(task)
    other = make_task(n_seeds=40, pool_per_seed=5, n_dev=30, n_test=60, seed=4)
    assert not other["question"].equals(task["question"])


def test_seed_draws_do_not_depend_on_other_split_sizes(task):
    small = make_task(n_seeds=40, pool_per_seed=2, n_dev=0, n_test=5, seed=3)
    assert small.filter(pl.col("split") == "seed").equals(task.filter(pl.col("split") == "seed"))


def test_ids_unique_and_formatted(task):
    assert task["id"].n_unique() == task.height
    patterns = {"seed": r"seed-\d{4}", "pool": r"pool-\d{4}-\d+", "dev": r"dev-\d{4}", "test": r"test-\d{4}"}
    for split, pattern in patterns.items():
        ids = task.filter(pl.col("split") == split)["id"]
        assert ids.str.contains(f"^{pattern}$").all(), split
    assert task.filter(pl.col("split") == "seed")["id"][7] == "seed-0007"


def test_pool_links_to_its_seeds_spec(task):
    seeds = {r["id"]: r for r in task.filter(pl.col("split") == "seed").iter_rows(named=True)}
    others = task.filter(pl.col("split") != "pool")
    assert others["seed_id"].null_count() == others.height
    pool = task.filter(pl.col("split") == "pool")
    assert pool["seed_id"].null_count() == 0
    assert dict(pool.group_by("seed_id").len().iter_rows()) == {sid: 5 for sid in seeds}
    for row in pool.iter_rows(named=True):
        seed = seeds[row["seed_id"]]
        assert row["id"].startswith("pool-" + seed["id"].removeprefix("seed-") + "-")
        assert row["question"] != seed["question"] and row["steps"] == seed["steps"]
        s, p = QUESTION.match(seed["question"]), QUESTION.match(row["question"])
        # Same name, item and verbs; only the numbers differ.
        assert (s.group(1), s.group(3)) == (p.group(1), p.group(3))
        assert re.sub(r"\d+", "N", s.group(4)) == re.sub(r"\d+", "N", p.group(4))
    for _, group in pool.group_by("seed_id"):
        assert group["question"].n_unique() == group.height


def test_dev_and_test_are_fresh(task):
    seen = set(task.filter(pl.col("split").is_in(["seed", "pool"]))["question"])
    held_out = task.filter(pl.col("split").is_in(["dev", "test"]))["question"]
    assert not seen & set(held_out)
    assert held_out.n_unique() == len(held_out)


def test_answers_are_right(task):
    for row in task.iter_rows(named=True):
        steps = STEP.findall(row["solution"])
        assert len(steps) == row["steps"], row["solution"]
        for a, op, n, r in steps:
            assert {"+": int(a) + int(n), "-": int(a) - int(n), "*": int(a) * int(n)}[op] == int(r), row["solution"]
        assert steps[-1][3] == row["answer"]  # the last step's result is the answer
        assert answer_of(row["solution"]) == row["answer"]
        assert int(row["answer"]) == replay_question(row["question"])
        # The chain starts from the question's start count and each step starts from the last result.
        assert int(steps[0][0]) == int(QUESTION.match(row["question"]).group(2))
        assert all(steps[i][3] == steps[i + 1][0] for i in range(len(steps) - 1))
    assert task["steps"].min() >= 2 and task["steps"].max() <= 5


def test_style_floor(task):
    assert (task["style_floor"] > 0).all()
    for row in task.head(20).iter_rows(named=True):
        n_tokens = len(" " + row["solution"] + "\nDone.") + 1  # one per character, plus EOS
        assert row["style_floor"] == pytest.approx(style_entropy(row["steps"]) / n_tokens)
    # By hand: 3 prefixes, 4 styles per step, 2 separators per junction, for 2 steps.
    assert style_entropy(2) == pytest.approx(math.log(3) + 2 * math.log(4) + math.log(2))
    assert style_entropy(1) == pytest.approx(math.log(3 * 4))


def test_phrasing_varies(task):
    solutions = task["solution"].to_list()
    for marker in ("=", " = ", " is ", ": ", "; ", ", ", "So ", "Ok, "):
        assert any(marker in s for s in solutions), marker


def test_siblings_differ_and_keep_the_spec():
    rng = np.random.default_rng(0)
    problem = draw_problem(rng, 4)
    assert len(valid_numbers(problem.spec)) >= MIN_VARIANTS
    sibs = siblings(rng, problem, MIN_VARIANTS - 1)
    assert {s.spec for s in sibs} == {problem.spec}
    assert len({s.question for s in sibs} | {problem.question}) == MIN_VARIANTS


def test_answer_of():
    assert answer_of(" So 3+4=7; 7*2 is 14 #### 14\nDone.") == "14"
    assert answer_of("#### 1 #### 22 \nDone. more") == "22"
    assert answer_of("7+3=10 #### 10") == "10"
    assert answer_of("7+3=10, no answer mark") is None
    assert answer_of("####\nDone.") is None
    assert answer_of("#### \nDone.") is None


def test_pretraining_text():
    docs = [pretraining_text(np.random.default_rng(5)) for _ in range(2)]
    assert docs[0] == docs[1]
    rng = np.random.default_rng(1)
    docs = [pretraining_text(rng) for _ in range(400)]
    problems = [d for d in docs if "\nAnswer: " in d]
    assert 0.4 < len(problems) / len(docs) < 0.6
    assert all(d.endswith("\nDone.") for d in problems)
    step_counts = {len(STEP.findall(d.split("\nAnswer: ")[1])) for d in problems}
    assert step_counts == {1, 2, 3, 4, 5}
    for d in docs:
        if d not in problems:
            assert len(d) >= 100
            for a, op, n, r in STEP.findall(d):
                assert 0 <= int(r) <= MAX_VALUE
                assert {"+": int(a) + int(n), "-": int(a) - int(n), "*": int(a) * int(n)}[op] == int(r)


@pytest.mark.parametrize("kwargs, field", [
    ({"min_steps": 4, "max_steps": 3}, "min_steps"),
    ({"max_steps": 6}, "max_steps"),
    ({"pool_per_seed": MIN_VARIANTS}, "pool_per_seed"),
    ({"n_test": -1}, "n_test"),
])
def test_bad_arguments_are_named(kwargs, field):
    args = {"n_seeds": 2, "pool_per_seed": 1, "n_dev": 1, "n_test": 1} | kwargs
    with pytest.raises(ValueError, match=field):
        make_task(**args)
