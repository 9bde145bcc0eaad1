"""The auto strategy in a comparison on a tiny real model: a decision per round in the step record, dev accuracy
measured, the same decisions after a resume, a stopping rule that ends the chain, and the report's decision log."""

import json

import polars as pl
import pytest

from loop.config import build_config
from loop.run.engine import Engine
from reports.run import write_run_report

pytestmark = pytest.mark.integration


def cfg(model_dir, out, params="{arms: [premem, loss]}"):
    return build_config("smoke", overrides=[
        f"model.name_or_path={model_dir}", f"out_dir={out}", "data.n_seeds=6", "data.n_test=6", "data.n_dev=6",
        "sampling.max_new_tokens=24", "torch_threads=1", "workers=1", "selection.budgets=[3, 3, 3]",
        f"selection.strategies=[random, {{name: auto, params: {params}}}]"])


def decisions(out, strategy="auto"):
    """The decision records, less the wall seconds no seed fixes (the compute check's evidence and the lookahead's)
    and the count of probes a rerun read back from the store instead of training them again."""
    made = [json.loads(p.read_text())["decision"]
            for p in sorted(out.glob(f"steps/seed-0/{strategy}/round-*/step.json"))]
    for d in made:
        d["checks"] = [c for c in d["checks"] if c["rule"] != "compute_seconds"]
        for key in ("seconds", "reused"):
            d["evidence"].get("lookahead", {}).get("cost", {}).pop(key, None)
    return made


def test_auto_decides_each_round_and_resumes_to_the_same_decisions(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    Engine(cfg(tiny_model_dir, out)).run_all(progress=False)
    made = decisions(out)
    assert [d["round"] for d in made] == [1, 2, 3]
    assert all(d["arm"] in ("random", "premem", "loss") and d["budget"] == 3 for d in made)
    assert all(min(d["probabilities_after"].values()) >= 0.1 - 1e-9 for d in made)
    record = json.loads((out / "steps/seed-0/shared/round-0/step.json").read_text())
    assert 0.0 <= record["dev_accuracy"] <= 1.0 and record["dev_graded"] == 6
    copy = tmp_path / "again"
    Engine(cfg(tiny_model_dir, copy)).run_all(progress=False)
    assert decisions(copy) == made  # deterministic for a seed
    summary = json.loads((write_run_report(out).parent / "summary.json").read_text())
    log = next(t for t in summary["tables"] if t["title"].startswith("Decisions"))
    assert [row[2] for row in log["rows"]] == [1, 2, 3]


def test_a_stopping_rule_ends_the_chain(tiny_model_dir, tmp_path):
    out = tmp_path / "stopped"
    Engine(cfg(tiny_model_dir, out, "{arms: [premem], max_examples: 9}")).run_all(progress=False)
    made = decisions(out)
    # 6 seeds + 3 = 9 examples after round 1: round 2 stops (and round 3 after it)
    assert [d["stop"] for d in made] == [False, True, True]
    assert [d["stop_reason"] for d in made[1:]] == ["total_examples", "stopped_before"]
    stopped = json.loads((out / "steps/seed-0/auto/round-3/step.json").read_text())
    assert stopped["stopped"] and stopped["n_selected"] == 0
    assert pl.read_parquet(out / "steps/seed-0/auto/round-3/eval.parquet").height == 0  # no curve point


def generated_cfg(out, generator="embedded"):
    # The embedded base (real accuracies, so premem varies), a threshold of 0 (few eligible seeds) and a round of 6
    # against 4 eligible items: the controller generates for the eligible seeds. The lookahead is off: it may give
    # the round to random, which never runs short of eligible items, and this is about what premem's rounds generate.
    return build_config("smoke", overrides=[
        f"out_dir={out}", "data.n_seeds=6", "data.pool_per_seed=2", "data.n_test=8", "data.n_dev=4", "workers=1",
        "torch_threads=1", "selection.budgets=[6, 4]", "selection.iid_extra_budgets=[]",
        "selection.strategies=[random, {name: auto, params: {arms: [premem], floor: 0.0, generate: "
        f"{generator}, generate_per_seed: 3, threshold_range: [0.0, 0.0], lookahead: false}}}}]"])


def test_generated_items_are_vetted_before_they_are_trained_on(tmp_path):
    from loop.control.generation import ngrams
    from loop.grading import grade_many

    out = tmp_path / "generated"
    engine = Engine(generated_cfg(out))
    engine.run_all(progress=False)
    record = json.loads((out / "steps/seed-0/auto/round-1/step.json").read_text())
    counts = record["decision"]["generation"]
    assert counts["generated"] > 0 and counts["accepted"] == counts["generated"] - counts["failed_verification"] - \
        counts["duplicate"] - counts["contaminated"]
    made = pl.read_parquet(out / "steps/seed-0/auto/round-1/generated.parquet")
    examples = engine.context.examples(0)
    held_out = examples.filter(pl.col("split").is_in(["dev", "test"]))["question"].to_list()
    assert all(g.correct for g in grade_many(made["solution"].to_list(), made["answer"].to_list(), "embedded"))
    forbidden = set().union(*(ngrams(q, 8) for q in held_out))
    assert not any(ngrams(q, 8) & forbidden for q in made["question"])
    assert not set(made["question"]) & set(examples["question"])
    selected = set()
    for r in (1, 2):
        selected |= set(pl.read_parquet(out / f"steps/seed-0/auto/round-{r}/selected.parquet")["id"])
    pool = set(examples.filter(pl.col("split") == "pool")["id"])
    assert selected <= pool | set(made["id"]) and selected & set(made["id"])  # generated items were used
    assert record["n_trained"] == 6 + 6


class _Careless:
    """A generator whose items all fail: wrong answers, or a test question copied."""

    name = "careless"

    def __init__(self, test_question):
        self.test_question = test_question

    def generate(self, seeds, per_seed, *, seed, tag):
        rows = [{"id": f"{tag}-{sid}-bad", "seed_id": sid, "question": q + " (new)", "solution": "1+1=2 #### 2",
                 "answer": "3"} for sid, q in zip(seeds["id"], seeds["question"])]
        rows.append({"id": f"{tag}-copy", "seed_id": seeds["id"][0], "question": self.test_question,
                     "solution": "2+2=4 #### 4", "answer": "4"})
        return pl.DataFrame(rows)


def test_items_that_fail_their_checks_are_never_trained_on(tmp_path, monkeypatch):
    from loop.control import generation

    cfg = generated_cfg(tmp_path / "careless", generator="embedded")
    engine = Engine(cfg)
    engine.prepare()
    question = engine.context.examples(0).filter(pl.col("split") == "test")["question"][0]
    monkeypatch.setitem(generation.GENERATORS.items, "embedded", lambda auto, task: _Careless(question))
    engine.run_all(progress=False)
    counts = json.loads((tmp_path / "careless/steps/seed-0/auto/round-1/step.json").read_text())["decision"]["generation"]
    assert counts["accepted"] == 0 and counts["failed_verification"] >= 1 and counts["contaminated"] == 1
    assert not (tmp_path / "careless/steps/seed-0/auto/round-1/generated.parquet").exists()
    pool = set(engine.context.examples(0).filter(pl.col("split") == "pool")["id"])
    for r in (1, 2):
        assert set(pl.read_parquet(tmp_path / f"careless/steps/seed-0/auto/round-{r}/selected.parquet")["id"]) <= pool


def test_paired_rewards_make_auto_wait_for_randoms_previous_round(tiny_model_dir, tmp_path):
    from loop.run.plan import Step, plan_steps, step_inputs

    config = cfg(tiny_model_dir, tmp_path)
    assert step_inputs(config, Step(0, "auto", 1)) == [Step(0, "shared", 0)]
    assert step_inputs(config, Step(0, "auto", 3)) == [Step(0, "auto", 2), Step(0, "random", 2)]
    assert step_inputs(config, Step(0, "random", 3)) == [Step(0, "random", 2)]
    order = plan_steps(config)
    for step in order:  # the plan puts every input first
        assert all(order.index(i) < order.index(step) for i in step_inputs(config, step))
    own = cfg(tiny_model_dir, tmp_path, "{arms: [premem], reward: own}")
    assert step_inputs(own, Step(0, "auto", 3)) == [Step(0, "auto", 2)]
