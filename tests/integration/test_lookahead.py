"""The auto controller's lookahead on the embedded task's real base model: before each round it probes every arm's
batch (the very batch that arm's own strategy selects) with a probe fine-tune that lowers the dev loss, records each
arm's evidence and the probes' cost in the decision, commits to the arm the evidence names and trains on its batch,
books the probes' seconds as the `lookahead` stage of the compute table and the report, and decides the same when a
step is run again."""

import json
import shutil

import numpy as np
import polars as pl
import pytest

from loop.config import build_config
from loop.control.lookahead import combine
from loop.control.probe import probe_config, probe_epochs
from loop.run.engine import Engine
from reports.run import write_run_report
from tests.integration.test_auto import decisions

pytestmark = pytest.mark.integration


def cfg(out, *changes):
    # The embedded base (loop/assets), which learns the task: the probes' dev losses mean something. No pool items
    # kept back (the last test covers those), so that the probed batches are the fixed strategies' own. `changes`
    # are further overrides, applied after these.
    return build_config("smoke", overrides=[
        f"out_dir={out}", "data.n_seeds=8", "data.pool_per_seed=4", "data.n_test=8", "data.n_dev=8", "workers=1",
        "torch_threads=1", "train.epochs=2", "selection.budgets=[6, 6]", "selection.iid_extra_budgets=[]",
        "selection.strategies=[random, loss, {name: auto, params: {arms: [loss], lookahead_holdout: 0}}]", *changes])


def step_dir(out, strategy, round_):
    return out / f"steps/seed-0/{strategy}/round-{round_}"


def test_the_lookahead_probes_each_arms_batch_records_its_evidence_and_counts_its_compute(tmp_path):
    out = tmp_path / "run"
    engine = Engine(cfg(out))
    engine.run_all(progress=False)
    made = [json.loads((step_dir(out, "auto", r) / "step.json").read_text()) for r in (1, 2)]
    for info in made:
        look = info["decision"]["evidence"]["lookahead"]
        arms = look["arms"]
        assert set(arms) == {"random", "loss"} and look["metric"] == "loss" and look["epochs"] == 2
        assert sum(a["p_look"] for a in arms.values()) == pytest.approx(1.0)
        assert all(np.isfinite(a["dev_loss"]) and a["dev_loss"] > 0 for a in arms.values())
        assert arms["random"]["gain_vs_random"] == 0.0
        # The arm the round took is the one the evidence names, and the round trained on the batch it probed.
        p_look = {a: e["p_look"] for a, e in arms.items()}
        assert info["decision"]["arm"] == combine(p_look, info["decision"]["probabilities_after"])[0]
        chosen = pl.read_parquet(step_dir(out, "auto", info["round"]) / "selected.parquet")["id"].to_list()
        assert chosen == arms[info["decision"]["arm"]]["batch"]
        # Cost: one fine-tune per distinct batch, each on the seeds + earlier selections + the batch, for the round's
        # 2 epochs.
        distinct = {tuple(sorted(a["batch"])) for a in arms.values()}
        cost = look["cost"]
        trained = 8 + 6 * (info["round"] - 1) + 6
        assert cost["finetunes"] == len(distinct) and cost["examples_trained"] == len(distinct) * trained * 2
        assert cost["optimizer_steps"] == len(distinct) * -(-trained // 8) * 2  # batches of 8, 2 epochs
        assert cost["dev_items_scored"] == 8 * len(distinct)
        timings = pl.read_parquet(step_dir(out, "auto", info["round"]) / "timings.parquet")
        by_stage = dict(zip(timings["stage"], timings["seconds"]))
        assert by_stage["lookahead"] == pytest.approx(cost["seconds"]) and cost["seconds"] > 0
        assert by_stage["select"] < by_stage["lookahead"]  # the probes' seconds are booked once, not in select too
        assert info["seconds"] == pytest.approx(timings["seconds"].sum())

    # At round 1 every arm selects from the same candidates as its own strategy does: the probes scored exactly the
    # batches the fixed strategies took.
    first = made[0]["decision"]["evidence"]["lookahead"]["arms"]
    for arm in ("random", "loss"):
        assert first[arm]["batch"] == pl.read_parquet(step_dir(out, arm, 1) / "selected.parquet")["id"].to_list()

    summary = json.loads((write_run_report(out).parent / "summary.json").read_text())
    assert summary["strategies"]["auto"]["compute_seconds"]["by_stage"]["lookahead"] == pytest.approx(
        sum(i["decision"]["evidence"]["lookahead"]["cost"]["seconds"] for i in made))
    table = next(t for t in summary["tables"] if t["title"].startswith("Decisions"))
    column = table["columns"].index("probes: P(best) (dev gain)")
    assert all("random" in row[column] and "loss" in row[column] for row in table["rows"])
    finetunes = sum(i["decision"]["evidence"]["lookahead"]["cost"]["finetunes"] for i in made)
    assert any(n.startswith(f"The auto controller's lookahead ran {finetunes} probe fine-tunes over 2 decisions")
               for n in summary["notes"])

    # A step run again (its folder gone, as after a kill before its commit) decides the same, from the probes the
    # first attempt kept.
    before = decisions(out)
    shutil.rmtree(step_dir(out, "auto", 2))
    Engine(cfg(out)).run_all(progress=False)
    assert decisions(out) == before
    cost = json.loads((step_dir(out, "auto", 2) / "step.json").read_text())["decision"]["evidence"]["lookahead"]["cost"]
    assert cost["reused"] == cost["finetunes"] > 0


def test_a_probe_scores_its_own_fine_tuned_model_not_the_base(tmp_path):
    """The probe trains for real: the random arm's probe at round 1 has another dev loss than the base it started
    from, scored the same way. (Higher, here: the embedded base was pretrained on the task's own documents, 0.185 nats
    per target token on dev, and the round's 2 epochs at lr 3e-4 on 14 examples end at about 0.194, a gap a thousand
    times float32 rounding; the probes compare arms with each other, never with the base.)"""
    from loop.model.formatting import encode_for
    from loop.model.loading import load_base

    out = tmp_path / "run"
    config = cfg(out).model_copy(update={"selection": cfg(out).selection.model_copy(update={"budgets": [6]})})
    engine = Engine(config)
    engine.run_all(progress=False)
    look = json.loads((step_dir(out, "auto", 1) / "step.json").read_text())["decision"]["evidence"]["lookahead"]
    ctx = engine.context
    dev = ctx.split(0, "dev").sort("id")
    base = load_base(config.model, ctx.device)
    with ctx.backend.bind(base, tag="base") as bound:
        base_loss = float(np.mean(bound.scorer.mean_nll(encode_for(config.model, ctx.tokenizer, dev))))
    assert abs(look["arms"]["random"]["dev_loss"] - base_loss) > 1e-3


def test_a_probe_trains_the_rounds_epochs_unless_told_otherwise_with_its_warmup_scaled():
    config = build_config("default")
    assert probe_epochs(5, None) == 5 and probe_epochs(8, None) == 8 and probe_epochs(8, 2) == 2
    probe = probe_config(config, 3)
    assert probe.train.epochs == 3 and probe.train.warmup_steps == round(config.train.warmup_steps * 3 / 5)
    assert probe.train.learning_rate == config.train.learning_rate and config.train.epochs == 5  # the run's kept


def test_repeated_probes_average_their_repeats_and_the_first_repeat_is_the_single_probe(tmp_path):
    """lookahead_repeats 2: each arm's batch is probed twice, repeat 0 under the round's training seed (so it is the
    single probe of repeats 1) and repeat 1 under a seed of its own; the evidence is their mean, and the cost counts
    both."""
    from types import SimpleNamespace

    from loop.control.probe import _probe, probe_arms

    out = tmp_path / "run"
    repeated = cfg(out, "selection.budgets=[6]",
                   "selection.strategies=[random, {name: auto, params: {arms: [loss], lookahead_repeats: 2, "
                   "lookahead_holdout: 0}}]")
    engine = Engine(repeated)
    engine.run_all(progress=False)
    info = json.loads((step_dir(out, "auto", 1) / "step.json").read_text())
    look = info["decision"]["evidence"]["lookahead"]
    assert look["repeats"] == 2
    distinct = {tuple(sorted(a["batch"])) for a in look["arms"].values()}
    assert look["cost"]["finetunes"] == 2 * len(distinct)
    assert look["cost"]["examples_trained"] == 2 * len(distinct) * (8 + 6) * 2  # 2 repeats x 2 epochs
    assert look["cost"]["dev_items_scored"] == 2 * 8 * len(distinct)

    ctx, step = engine.context, SimpleNamespace(seed=0, strategy="auto", round=1)
    batch = look["arms"]["random"]["batch"]
    rows = ctx.rows(step)
    train = rows.filter((pl.col("split") == "seed") | pl.col("id").is_in(batch))
    dev = ctx.split(0, "dev").sort("id")
    probe_cfg = probe_config(repeated, look["epochs"])
    each = [_probe(ctx, step, probe_cfg, train, dev, "loss", 0, repeat) for repeat in (0, 1)]
    assert abs(float(each[0].mean()) - float(each[1].mean())) > 1e-4  # the repeats trained under different seeds
    assert look["arms"]["random"]["dev_loss"] == pytest.approx(float(np.mean(each)), abs=1e-5)
    single, cost = probe_arms(ctx, step, [], {"random": batch}, epochs=look["epochs"], metric="loss")
    assert cost.finetunes == 1 and np.allclose(single["random"], each[0], atol=1e-5)
    with pytest.raises(ValueError, match="lookahead_repeats"):
        probe_arms(ctx, step, [], {"random": batch}, epochs=1, metric="loss", repeats=0)


def test_a_holdout_is_never_selected_by_the_chain_and_the_probes_score_it_beside_dev(tmp_path):
    """By default: a quarter of the pool of 32 is kept back."""
    from loop.control.holdout import holdout_ids

    out = tmp_path / "run"
    config = cfg(out, "train.epochs=1", "selection.strategies=[random, {name: auto, params: {arms: [loss]}}]")
    engine = Engine(config)
    engine.run_all(progress=False)
    kept = holdout_ids(engine.context.examples(0), 0, 8)
    chosen = []
    for r in (1, 2):
        info = json.loads((step_dir(out, "auto", r) / "step.json").read_text())
        look = info["decision"]["evidence"]["lookahead"]
        distinct = {tuple(sorted(a["batch"])) for a in look["arms"].values()}
        assert look["holdout_items"] == 8 and look["cost"]["dev_items_scored"] == (8 + 8) * len(distinct)
        assert not set(kept) & {i for a in look["arms"].values() for i in a["batch"]}
        assert info["n_candidates"] == 32 - 8 - 6 * (r - 1)  # the pool less the kept-back items and round 1's
        chosen += pl.read_parquet(step_dir(out, "auto", r) / "selected.parquet")["id"].to_list()
    assert len(chosen) == 12 and not set(kept) & set(chosen)
