"""What a round of the `auto` strategy does inside the engine: read its history from the run store, decide
(`loop.control.controller.decide`), look ahead (probe each arm's batch and commit to the best-supported arm), generate
and vet new items where the chosen seeds' unused items run short, and commit a round the controller stopped before.
The select stage (`loop.run.stages.select`) calls `select` in place of a fixed strategy's scoring."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import polars as pl

from loop.control.controller import AutoParams, Decision, RoundRecord, arm_params, decide
from loop.control.generation import GENERATORS, vet
from loop.control.holdout import default_size, holdout_ids, withheld
from loop.control.lookahead import combine, item_scores, paired_gains, probability_best, recorded_cost
from loop.control.probe import probe_arms, probe_epochs
from loop.schema import EVAL_SCHEMA, SHARED_STRATEGY
from loop.seeds import derived_seed
from loop.selection import choose_batch

if TYPE_CHECKING:  # the run context is handed down; this floor never imports the run's
    from loop.run.context import RunContext


def select(ctx: RunContext, step, used: list[str], cands: pl.DataFrame, budget: int, params: dict, info: dict):
    """The arm, its params, the budget, the candidates (with any generated items) and the newly generated items
    (None if none; the engine commits them with the step) for this round, or None where the controller stops; the
    decision goes into `info["decision"]`."""
    auto = AutoParams.parse(params)
    kept_back = kept_back_ids(ctx, step, auto)
    cands = withheld(cands, kept_back)
    decision = decide(auto, records(ctx.store, step), cands, budget, seed=derived_seed("auto", step.seed),
                      round_=step.round)
    if auto.lookahead and not decision.stop and min(decision.budget, cands.height) > 0 and len(auto.arms) > 1:
        decision = look_ahead(ctx, step, used, cands, decision, auto, kept_back)
    info["decision"] = decision.record()
    if decision.stop:
        return None
    chosen_params = {"threshold": decision.threshold} if decision.threshold is not None else {}
    budget = decision.budget
    eligible = cands if decision.threshold is None else cands.filter(pl.col("premem") <= decision.threshold)
    generated = None
    if auto.generate and eligible.height < budget:  # the chosen seeds' unused items ran short
        made, counts = generate(ctx, step, auto, eligible, cands)
        info["decision"]["generation"] = counts
        if made.height:
            generated = made
            cands = withheld(ctx.candidates(step, used, made), kept_back)
        elif cands.height == 0:  # nothing left in the pool and nothing the generator made passed its checks
            info["decision"] |= {"stop": True, "stop_reason": "pool_and_generator_exhausted", "arm": None, "budget": 0}
            return None
    return decision.arm, chosen_params, min(budget, cands.height), cands, generated


def kept_back_ids(ctx: RunContext, step, auto: AutoParams) -> list[str]:
    """The pool items this replicate's chain keeps back for its probes (`loop.control.holdout`; none without the
    lookahead)."""
    if not auto.lookahead:
        return []
    examples = ctx.examples(step.seed)
    n = auto.lookahead_holdout
    return holdout_ids(examples, step.seed, default_size(examples, ctx.cfg.selection.budgets) if n is None else n)


def look_ahead(ctx: RunContext, step, used: list[str], cands: pl.DataFrame, decision: Decision,
               auto: AutoParams, kept_back: list[str] = ()) -> Decision:
    """Probe every arm's batch for this round (`loop.control.probe`) and commit to the arm the probes and the bandit
    favour together (`loop.control.lookahead`). The decision keeps the bandit's draw, and gains each arm's evidence
    (its probe's dev measurement, gain over random with its standard error, P(best) from the probes, the bandit and
    combined, and the batch probed) and the probes' cost under evidence["lookahead"]. The probes score pool batches;
    where the chosen arm's eligible items then run short, the generator tops them up after the choice (`select`)."""
    budget = min(decision.budget, cands.height)
    params = {arm: arm_params(arm, cands, budget, auto) for arm in auto.arms}
    batches = {arm: choose_batch(cands, arm, params[arm], budget, replicate=step.seed, round_=step.round,
                                 selected_before=tuple(used), n_seeds=ctx.n_seeds(step.seed))[0]
               for arm in auto.arms}
    epochs = probe_epochs(ctx.cfg.train.epochs, auto.lookahead_epochs)
    measured, cost = probe_arms(ctx, step, used, batches, epochs=epochs, metric=auto.lookahead_metric,
                                repeats=auto.lookahead_repeats, holdout=kept_back)
    scores = {arm: item_scores(auto.lookahead_metric, values) for arm, values in measured.items()}
    p_look = probability_best(scores, seed=derived_seed("auto-lookahead", step.seed, step.round),
                              n_draws=auto.lookahead_draws)
    arm, combined = combine(p_look, decision.probabilities_after)
    gains = paired_gains(scores, "random" if "random" in scores else next(iter(scores)))
    measure = "dev_loss" if auto.lookahead_metric == "loss" else "dev_accuracy"
    arms = {a: {measure: float(measured[a].mean()), "gain_vs_random": gains[a][0],
                "gain_se": gains[a][1] if gains[a][1] == gains[a][1] else None,  # NaN (one dev item) -> null
                "p_look": p_look[a], "p_bandit": decision.probabilities_after[a], "p_combined": combined[a],
                **params[a], "batch": batches[a]} for a in auto.arms}
    evidence = {"metric": auto.lookahead_metric, "epochs": epochs, "repeats": auto.lookahead_repeats,
                **({"holdout_items": len(kept_back)} if kept_back else {}),
                "bandit_draw": decision.arm, "arms": arms,
                "cost": cost.record()}
    mean = decision.evidence.get("posterior", {}).get(arm, {}).get("mean")
    return dataclasses.replace(decision, arm=arm, threshold=params[arm].get("threshold"), expected_reward=mean,
                               evidence={**decision.evidence, "lookahead": evidence})


def lookahead_seconds(info: dict) -> float:
    """The seconds a step's lookahead spent (0 without one): the engine books them as their own stage."""
    return float(recorded_cost(info.get("decision")).get("seconds", 0.0))


def generate(ctx: RunContext, step, auto: AutoParams, eligible: pl.DataFrame, cands: pl.DataFrame):
    """New items for the seeds behind `eligible` (every seed if none is eligible), vetted (`generation.vet`): the
    accepted items and the counts by reason."""
    rows = ctx.rows(step)
    seed_ids = eligible["seed_id"].drop_nulls().unique().to_list() or cands["seed_id"].drop_nulls().unique().to_list()
    seeds = rows.filter((pl.col("split") == "seed") & pl.col("id").is_in(seed_ids)).sort("id")
    generator = GENERATORS.resolve(auto.generate)(auto, ctx.cfg.task)
    made = generator.generate(seeds, auto.generate_per_seed, seed=derived_seed("generate", step.seed),
                              tag=f"gen-r{step.round}")
    held_out = rows.filter(pl.col("split").is_in(["dev", "test"]))["question"].to_list()
    accepted, counts = vet(made, task=ctx.cfg.task, known_questions=rows["question"].to_list(),
                           held_out_questions=held_out, ngram=auto.contamination_ngram)
    return accepted, counts | dict(getattr(generator, "rejected", {}))


def _record(store, seed: int, strategy: str, round_: int) -> dict:
    return store.read_record(seed, strategy, round_)


def records(store, step) -> list[RoundRecord]:
    """Round 0 and the auto chain's finished rounds before `step`, as the controller reads them, each with random's
    dev accuracy at the same round (the paired reward's reference) where that round is done."""
    out = []
    for r in range(step.round):
        info = _record(store, step.seed, SHARED_STRATEGY if r == 0 else step.strategy, r)
        reference = info if r == 0 else (
            _record(store, step.seed, "random", r) if store.is_done(step.seed, "random", r) else {})
        decision = info.get("decision") or {}
        out.append(RoundRecord(round=r, arm=decision.get("arm"), n_examples=info["n_examples"],
                               dev_accuracy=info.get("dev_accuracy"), dev_graded=info.get("dev_graded", 0),
                               seconds=info.get("seconds", 0.0), stopped=bool(info.get("stopped")),
                               reference_dev=reference.get("dev_accuracy")))
    return out


def commit_stopped(store, step, info: dict, timings) -> dict:
    """A round the controller stopped before: nothing selected, trained or evaluated (no curve point); the previous
    round's signals are kept for any later round, which stops as well."""
    parent = step.parent
    previous = _record(store, parent.seed, parent.strategy, parent.round)
    info |= {"stopped": True, "n_examples": previous["n_examples"], "n_selected": 0,
             "stop_reason": info["decision"]["stop_reason"]}
    timing_frame = pl.DataFrame({"strategy": step.strategy, "seed": step.seed, "round": step.round,
                                 "stage": [t[0] for t in timings], "seconds": [t[1] for t in timings]})
    info["seconds"] = float(timing_frame["seconds"].sum())
    store.commit_step(step.seed, step.strategy, step.round, {
        "selected": pl.DataFrame({"id": []}, schema={"id": pl.String}),
        "signals": store.step_frame(parent.seed, parent.strategy, parent.round, "signals"),
        "eval": pl.DataFrame(schema=EVAL_SCHEMA), "timings": timing_frame}, info)
    return info
