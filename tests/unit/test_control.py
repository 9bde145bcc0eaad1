"""The auto controller's parts on synthetic inputs whose answers are known: the bandit finds the best arm with
sublinear regret and keeps every arm above its floor, decisions are deterministic for a seed, each stopping rule
fires exactly when its condition holds, the threshold and budget adapt as documented."""

import math

import numpy as np
import polars as pl
import pytest

from loop.control import stopping
from loop.control.controller import AutoParams, RoundRecord, adaptive_threshold, decide, rewards
from loop.control.policy import DiscountedThompson, choose


def play(policy, means, rounds, seed):
    """Pull arms for `rounds` rounds with Gaussian rewards (sd 0.05); returns cumulative regret per round."""
    rng = np.random.default_rng(seed)
    arms = list(means)
    rows, regret = [], []
    best = max(means.values())
    for t in range(1, rounds + 1):
        history = pl.DataFrame(rows, schema={"round": pl.Int64, "arm": pl.String, "reward": pl.Float64})
        arm = choose(policy.probabilities(history, arms, seed=seed * 1000 + t), seed=seed * 7919 + t)
        rows.append({"round": t, "arm": arm, "reward": float(rng.normal(means[arm], 0.05))})
        regret.append((regret[-1] if regret else 0.0) + best - means[arm])
    return np.array(regret), [r["arm"] for r in rows]


def test_the_bandit_finds_the_best_arm_with_sublinear_regret():
    policy = DiscountedThompson(discount=1.0, floor=0.02, n_draws=1000)
    means = {"random": 0.0, "loss": 0.05, "premem": 0.12}
    regrets, late = [], []
    for seed in range(6):
        regret, pulls = play(policy, means, 120, seed)
        regrets.append(regret)
        late += pulls[-40:]
    mean = np.mean(regrets, axis=0)
    assert late.count("premem") / len(late) > 0.8
    # Average regret per round falls: sublinear cumulative regret (uniform play would give 0.063 per round).
    assert mean[119] / 120 < 0.5 * mean[29] / 30 < 0.063


def test_every_arm_stays_above_the_floor_and_probabilities_sum_to_one():
    policy = DiscountedThompson(floor=0.1)
    history = pl.DataFrame({"round": [1, 2, 3, 4], "arm": ["premem"] * 4, "reward": [0.5, 0.6, 0.55, 0.7]})
    probs = policy.probabilities(history, ["random", "premem", "loss"], seed=0)
    assert min(probs.values()) >= 0.1 - 1e-12 and math.isclose(sum(probs.values()), 1.0)
    assert probs["premem"] == max(probs.values())
    with pytest.raises(ValueError, match="exceeds 1"):
        DiscountedThompson(floor=0.5).probabilities(history, ["a", "b", "c"], seed=0)


def test_discounting_forgets_old_rewards():
    history = pl.DataFrame({"round": [1, 2, 3, 4, 5, 6], "arm": ["a", "a", "a", "b", "b", "b"],
                            "reward": [1.0, 1.0, 1.0, 0.2, 0.2, 0.2]})
    forgetful = DiscountedThompson(discount=0.3).posterior(history, ["a", "b"])
    steady = DiscountedThompson(discount=1.0).posterior(history, ["a", "b"])
    assert forgetful["a"][0] < steady["a"][0]  # a's rewards are old: they weigh less
    assert steady["a"][0] == pytest.approx(3.0 / 4.0)  # 3 rewards of 1 over weight 3 + prior 1


def records(devs, sizes, arms, refs=None):
    """Round records; random's dev accuracy (the paired reference) defaults to the first round's, flat."""
    refs = refs or [devs[0]] * len(devs)
    return [RoundRecord(round=r, arm=a, n_examples=n, dev_accuracy=d, dev_graded=200, seconds=10.0, reference_dev=ref)
            for r, (d, n, a, ref) in enumerate(zip(devs, sizes, arms, refs))]


def test_rewards_are_dev_gains_per_doubling():
    got = rewards(records([0.30, 0.40, 0.43], [64, 128, 256], [None, "premem", "loss"]), paired=False)
    assert got["arm"].to_list() == ["premem", "loss"]
    assert got["reward"].to_list() == [pytest.approx(0.10), pytest.approx(0.03)]


def test_paired_rewards_subtract_randoms_gain_at_the_same_round():
    # random gains 0.06 then 0.02: auto's advantage moved by +0.04, then +0.01
    recs = records([0.30, 0.40, 0.43], [64, 128, 256], [None, "premem", "loss"], refs=[0.30, 0.36, 0.38])
    got = rewards(recs)
    assert got["reward"].to_list() == [pytest.approx(0.04), pytest.approx(0.01)]
    missing = records([0.30, 0.40], [64, 128], [None, "premem"], refs=[0.30, None])
    assert rewards(missing).height == 0  # no reference yet: no paired reward
    with pytest.raises(ValueError, match="paired"):
        AutoParams.parse({"reward": "absolute"})


CANDS = pl.DataFrame({"id": [f"p{i}" for i in range(40)], "seed_id": [f"s{i // 4}" for i in range(40)],
                      "premem": np.repeat(np.linspace(0.0, 0.9, 10), 4)})


def test_decisions_are_deterministic_for_a_seed():
    params = AutoParams.parse({"arms": ["premem", "loss"]})
    recs = records([0.3, 0.35], [64, 96], [None, "loss"])
    first = decide(params, recs, CANDS, 8, seed=5, round_=2).record()
    assert decide(params, recs, CANDS, 8, seed=5, round_=2).record() == first
    assert params.arms == ("random", "premem", "loss")  # random is always an arm


def test_the_threshold_leaves_twice_the_budget_eligible_within_its_range():
    params = AutoParams()
    t = adaptive_threshold(CANDS, 8, params)  # 16 items needed: the 4th seed's premem (0.3)
    assert t == pytest.approx(0.3) and (CANDS["premem"] <= t).sum() >= 16
    assert adaptive_threshold(CANDS, 1, params) == 0.1  # clamped below
    assert adaptive_threshold(CANDS, 20, params) == 0.75  # clamped above


def test_the_budget_doubles_after_a_positive_reward_only():
    params = AutoParams(grow_budget=True)
    grew = decide(params, records([0.3, 0.4], [64, 96], [None, "premem"]), CANDS, 8, seed=0, round_=2)
    assert grew.budget == min(2 * (96 - 64), CANDS.height) == 40  # doubled, then capped by the unused pool
    held = decide(params, records([0.4, 0.3], [64, 72], [None, "premem"]), CANDS, 8, seed=0, round_=2)
    assert held.budget == 8


def test_stopping_rules_fire_exactly_when_their_condition_holds():
    assert not stopping.total_examples(99, 100).stop and stopping.total_examples(100, 100).stop
    assert not stopping.total_examples(10**6, None).stop
    assert not stopping.target_dev(0.59, 0.6).stop and stopping.target_dev(0.6, 0.6).stop
    assert not stopping.plateau([0.001, 0.001], 0.01, 3).stop  # only two rounds seen
    assert stopping.plateau([0.5, 0.001, 0.002, 0.003], 0.01, 3).stop
    assert not stopping.plateau([0.001, 0.02, 0.003], 0.01, 3).stop  # one gain beyond noise
    assert not stopping.compute_budget(59.9, 60).stop and stopping.compute_budget(60, 60).stop
    assert stopping.pool_exhausted(0).stop and not stopping.pool_exhausted(1).stop
    assert stopping.dev_noise(0.5, 200) == pytest.approx(math.sqrt(2 * 0.25 / 200))


def test_a_stop_is_recorded_with_its_rule_and_persists():
    params = AutoParams(max_examples=96)
    stop = decide(params, records([0.3, 0.35], [64, 96], [None, "premem"]), CANDS, 8, seed=0, round_=2)
    assert stop.stop and stop.stop_reason == "total_examples" and stop.arm is None and stop.budget == 0
    assert {c["rule"] for c in stop.checks} >= {"total_examples", "plateau", "pool_exhausted"}
    later = records([0.3, 0.35, 0.35], [64, 96, 96], [None, "premem", None])
    later[-1] = RoundRecord(round=2, arm=None, n_examples=96, dev_accuracy=None, dev_graded=0, seconds=0.0,
                            stopped=True)
    assert decide(AutoParams(), later, CANDS, 8, seed=0, round_=3).stop_reason == "stopped_before"


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="unknown param"):
        AutoParams.parse({"arm": ["premem"]})
    with pytest.raises(ValueError, match="own arms"):
        AutoParams.parse({"arms": ["auto"]})


def test_vetting_rejects_wrong_answers_duplicates_and_test_overlap():
    from loop.control.generation import ngrams, vet

    test_q = "Mia has 7 apples. She buys 3, loses 2, doubles them. How many apples does she have now?"
    generated = pl.DataFrame({
        "id": ["g0", "g1", "g2", "g3", "g4"], "seed_id": ["s0"] * 5,
        "question": ["Tom has 4 pens. He finds 2. How many pens does he have now?",           # fine
                     "Tom has 5 pens. He finds 2. How many pens does he have now?",           # wrong answer below
                     "Tom has 1 pens. He finds 1. How many pens does he have now?",           # a known question
                     "Eva has 9 apples. She buys 3, loses 2, doubles them. How many apples does she have now?",
                     "Tom has 4  pens. He finds 2. How many pens does he have now?"],         # repeats g0
        "solution": ["4+2=6 #### 6", "5+2=7 #### 7", "1+1=2 #### 2", "9+3=12, 12-2=10, 10*2=20 #### 20",
                     "4+2=6 #### 6"],
        "answer": ["6", "8", "2", "20", "6"]})
    accepted, counts = vet(generated, task="embedded",
                           known_questions=["Tom has 1 pens. He finds 1. How many pens does he have now?"],
                           held_out_questions=[test_q])
    assert accepted["id"].to_list() == ["g0"]
    assert counts == {"generated": 5, "failed_verification": 1, "duplicate": 2, "contaminated": 1, "accepted": 1}
    assert ("them", "how", "many", "apples", "does", "she", "have", "now") in ngrams(test_q, 8)


def test_curation_loop_strategies_lists_auto_with_every_param_it_takes(capsys):
    """A user who asks which strategies exist sees `auto` and every param it takes, with the default a config gets:
    its own fields and those each registered stopping rule declares."""
    import json

    from flows.cli import main
    from loop.control.controller import AutoParams
    from loop.control.stopping import rule_params

    options = AutoParams.options()
    assert {"arms", "policy", "discount", "reward", "generate", "grow_budget", "lookahead", "lookahead_epochs",
            "lookahead_metric"} <= set(options)
    assert set(rule_params()) <= set(options) and "rule_params" not in options
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    auto = out[out.index("\nauto "):]
    assert "random " in out[:out.index("\nauto ")]  # the registered strategies come first
    for key, default in options.items():
        assert f"{key}: {json.dumps(default)}" in auto
    for key, means in AutoParams.NULL_MEANS.items():  # a null that is not "off" says what it stands for
        assert options[key] is None and f"{key}: null (= {means})" in auto
    assert AutoParams.parse(dict(options)) == AutoParams.parse({})  # the listed defaults are the defaults


def _pick_after(means: dict[str, float], sd: float, rounds: int, trial: int) -> str:
    """The arm the default policy holds most likely best after `rounds` simulated rounds: each round it draws an arm
    with its probabilities and sees that arm's reward, drawn around the arm's true mean gain with noise `sd`."""
    import numpy as np
    import polars as pl

    from loop.control.controller import HISTORY_SCHEMA
    from loop.control.policy import DiscountedThompson, choose

    policy, rng, rows = DiscountedThompson(), np.random.default_rng(trial), []
    for r in range(1, rounds + 1):
        p = policy.probabilities(pl.DataFrame(rows, schema=HISTORY_SCHEMA), list(means), seed=trial * 1000 + r)
        arm = choose(p, seed=trial * 7919 + r)
        rows.append({"round": r, "arm": arm, "reward": float(rng.normal(means[arm], sd))})
    p = policy.probabilities(pl.DataFrame(rows, schema=HISTORY_SCHEMA), list(means), seed=trial * 1000 + rounds + 1)
    return max(p, key=p.get)


@pytest.mark.parametrize(("gap_in_sd", "rounds"), [(2.0, 4), (1.0, 12)])
def test_the_agent_finds_the_best_arm_within_the_stated_rounds_in_80_percent_of_trials(gap_in_sd, rounds):
    """Simulated rounds with a known best arm (loss gains 0.05 a doubling more than random and premem; reward noise
    sd = 0.05 / gap): the default policy names the best arm after 4 rounds where the gap is 2 noise sds, after 12
    where it is 1 (200 trials each). With the presets' 2 selection rounds it names it in about 64% and 52% of trials:
    why `auto` has not matched its best arm there (issue 24)."""
    means = {"random": 0.0, "premem": 0.0, "loss": 0.05}
    found = sum(_pick_after(means, 0.05 / gap_in_sd, rounds, trial) == "loss" for trial in range(200)) / 200
    assert found >= 0.8, found
