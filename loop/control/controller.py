"""The `auto` strategy's decisions: per round, which strategy fills the budget, the premem threshold, the budget,
and whether to stop, from the history of its own finished rounds. Pure: the same history and seed give the same
decision, so a resumed run decides as an uninterrupted one.

Reward of round r (the arm that filled it), per doubling of the training set (learning curves are roughly linear in
log n, so rounds of different sizes compare), `reward: paired` (default): the change of the advantage over `random`
at the same round of the same replicate,
    reward_r = [(dev_r - ref_r) - (dev_{r-1} - ref_{r-1})] / log2(n_r / n_{r-1}),   ref_0 = dev_0 (shared round 0),
which removes the gain every strategy makes from more data and the replicate's own noise; `reward: own`: the chain's
own gain (dev_r - dev_{r-1}) / log2(n_r / n_{r-1}). The paired reward makes round r of auto wait for random's round
r - 1 (`loop.run.plan.step_inputs`).

With `lookahead` on (the default), the arm drawn here is only the bandit's proposal: before the round commits, each
arm's batch is probed by a fine-tune scored on dev, and the round takes the arm the probes and the bandit favour
together (`loop.control.lookahead`, `loop.control.probe`; the glue is `loop.control.rounds.look_ahead`).

Each replicate decides from its own history and probes only: no evidence is pooled across the replicates of a
comparison (a user has one run, and pooling would break the independence that the report's intervals assume).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from loop.control import stopping
from loop.control.lookahead import METRICS
from loop.control.policy import POLICIES, choose
from loop.seeds import derived_seed

AUTO = "auto"
DESCRIPTION = ("The agent: per round, which arm fills the budget (a bandit over each arm's dev-accuracy gains, and a "
               "lookahead that probes each arm's batch with a fine-tune scored on dev), premem's threshold, the "
               "budget, where new items come from and when to stop.")
HISTORY_SCHEMA = {"round": pl.Int64, "arm": pl.String, "reward": pl.Float64}


@dataclass(frozen=True)
class AutoParams:
    """The params of `{name: auto, params: {...}}`, checked; arms are registered strategy names (random is always
    one)."""

    arms: tuple[str, ...] = ("random", "premem", "loss")
    policy: str = "discounted_thompson"
    discount: float = 0.9
    floor: float = 0.1
    adapt_threshold: bool = True  # premem's threshold per round from the observed distribution
    threshold_range: tuple[float, float] = (0.1, 0.75)
    eligible_factor: float = 2.0  # the threshold leaves about this many times the budget eligible
    grow_budget: bool = False  # double the budget while the last reward is positive
    max_examples: int | None = None
    target_dev: float | None = None
    plateau_rounds: int | None = None
    max_seconds: float | None = None
    reward: str = "paired"  # or "own": see the module docstring
    generate: str | None = None  # a generator (loop.control.generation.GENERATORS) for when eligible items run short
    generate_per_seed: int = 2
    contamination_ngram: int = 8
    teacher_url: str | None = None  # generate: teacher, an OpenAI-compatible endpoint (http://host:port)
    teacher_model: str | None = None
    teacher_samples: int = 4  # solutions sampled per new question; kept where min_agreement of them agree
    teacher_min_agreement: float = 0.75
    teacher_api_key_env: str | None = None  # the environment variable holding the key (never stored)
    lookahead: bool = True  # probe every arm's batch with a fine-tune scored on dev before committing
    lookahead_epochs: int | None = None  # the probes' epochs; null = the round's own (see loop.control.probe)
    lookahead_metric: str = "loss"  # "loss": dev target NLL (no sampling); "accuracy": sampled dev accuracy
    lookahead_draws: int = 2000  # bootstrap draws of the dev items behind P(arm is best)
    lookahead_repeats: int = 1  # probes per arm under different training seeds, averaged (cost x repeats)
    # pool items kept back from the chain, scored by the probes beside dev; null = NULL_MEANS below
    lookahead_holdout: int | None = None  # (loop.control.holdout)
    rule_params: dict = field(default_factory=dict)  # params only a registered stopping rule reads

    # What a null default stands for, where it is not "off" (listed by `curation-loop strategies`).
    NULL_MEANS = {"lookahead_epochs": "the round's own epochs",
                  "lookahead_holdout": "min(128, a quarter of the pool, what the pool holds beyond the budgets)"}

    def param(self, key: str):
        """An auto param by name: a field, or a stopping rule's (its default where not given)."""
        if key in self.__dataclass_fields__:
            return getattr(self, key)
        return self.rule_params.get(key, stopping.rule_params()[key])

    @classmethod
    def options(cls) -> dict:
        """Every param `auto` takes, with its default: the fields above and those the stopping rules declare."""
        defaults = {name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                    for name, f in cls.__dataclass_fields__.items() if name != "rule_params"}
        return {**defaults, **{k: v for k, v in stopping.rule_params().items() if k not in defaults}}

    @classmethod
    def parse(cls, params: dict) -> AutoParams:
        fields = set(cls.__dataclass_fields__) - {"rule_params"}
        known = fields | set(stopping.rule_params())  # a stopping rule declares the params it reads
        stray = sorted(set(params) - known)
        if stray:
            raise ValueError(f"strategy auto: unknown param(s) {stray}; known: {sorted(known)}")
        values = {k: v for k, v in params.items() if k in fields}
        values["rule_params"] = {k: v for k, v in params.items() if k not in fields}
        arms = list(values.get("arms", cls.arms))
        if AUTO in arms:
            raise ValueError("strategy auto cannot be one of its own arms")
        if "random" not in arms:
            arms = ["random", *arms]  # the arm that keeps the reward estimates honest
        values["arms"] = tuple(arms)
        if "threshold_range" in values:
            values["threshold_range"] = tuple(values["threshold_range"])
        if values.get("reward", cls.reward) not in ("paired", "own"):
            raise ValueError("strategy auto: reward must be 'paired' or 'own'")
        if values.get("policy", cls.policy) not in POLICIES:
            raise ValueError(f"strategy auto: policy must be one of {sorted(POLICIES)}")
        if values.get("lookahead_metric", cls.lookahead_metric) not in METRICS:
            raise ValueError(f"strategy auto: lookahead_metric must be one of {list(METRICS)}")
        if values.get("lookahead_epochs") is not None and int(values["lookahead_epochs"]) < 1:
            raise ValueError("strategy auto: lookahead_epochs must be >= 1 or null")
        if int(values.get("lookahead_repeats", cls.lookahead_repeats)) < 1:
            raise ValueError("strategy auto: lookahead_repeats must be >= 1")
        if values.get("lookahead_holdout") is not None and int(values["lookahead_holdout"]) < 0:
            raise ValueError("strategy auto: lookahead_holdout must be >= 0 or null")
        if not values.get("lookahead", cls.lookahead):
            # Probe settings without probes would be silently ignored: a user who wrote them expects probes.
            set_probe = sorted(k for k in values if k.startswith("lookahead_"))
            if set_probe:
                raise ValueError(f"strategy auto: {', '.join(set_probe)} set with lookahead: false (no probes run)")
        from loop.control.generation import GENERATORS

        if values.get("generate") is not None and values["generate"] not in GENERATORS:
            raise ValueError(f"strategy auto: generate must be one of {GENERATORS.names()} or null")
        return cls(**values)

    def make_policy(self):
        return POLICIES[self.policy](discount=self.discount, floor=self.floor)

    def as_run(self) -> dict:
        """Every param as this code runs it: the given values and the defaults, a stopping rule's params included,
        and a null default with a meaning written as that meaning (`null: ...`). The run store's manifest keeps it,
        so that a resume under code whose defaults have changed is stopped before it decides otherwise."""
        values = {key: self.param(key) for key in self.options()}
        for name, meaning in self.NULL_MEANS.items():
            if values[name] is None:
                values[name] = f"null: {meaning}"
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclass(frozen=True)
class RoundRecord:
    """What a finished round of the auto chain (or round 0) left: its arm, size and dev accuracy."""

    round: int
    arm: str | None
    n_examples: int
    dev_accuracy: float | None
    dev_graded: int
    seconds: float
    stopped: bool = False
    reference_dev: float | None = None  # random's dev accuracy at this round of this replicate (round 0: the same)


@dataclass
class Decision:
    round: int
    arm: str | None
    budget: int
    threshold: float | None
    probabilities_before: dict[str, float]
    probabilities_after: dict[str, float]
    expected_reward: float | None
    realized_reward_last: float | None
    stop: bool
    stop_reason: str | None
    checks: list[dict] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)

    def record(self) -> dict:
        return asdict(self)


def rewards(records: list[RoundRecord], paired: bool = True) -> pl.DataFrame:
    """round, arm, reward of every finished round after round 0 (`reward_r` in the module docstring)."""
    rows = []
    for prev, cur in zip(records, records[1:]):
        if cur.stopped or cur.arm is None or cur.dev_accuracy is None or prev.dev_accuracy is None:
            continue
        growth = math.log2(cur.n_examples / prev.n_examples) if cur.n_examples > prev.n_examples else 0.0
        if growth <= 0:
            continue
        gain = cur.dev_accuracy - prev.dev_accuracy
        if paired:
            if cur.reference_dev is None or prev.reference_dev is None:
                continue
            gain -= cur.reference_dev - prev.reference_dev
        rows.append({"round": cur.round, "arm": cur.arm, "reward": gain / growth})
    return pl.DataFrame(rows, schema=HISTORY_SCHEMA)


def adaptive_threshold(candidates: pl.DataFrame, budget: int, params: AutoParams) -> float | None:
    """The premem threshold leaving about `eligible_factor` x budget candidates eligible, within threshold_range:
    the smallest seed premem value t with #(candidates premem <= t) >= factor x budget."""
    if "premem" not in candidates.columns or not candidates.height:
        return None
    low, high = params.threshold_range
    values = np.sort(candidates["premem"].to_numpy())
    want = min(len(values), math.ceil(params.eligible_factor * budget))
    return float(min(max(values[want - 1], low), high))


def arm_params(arm: str, candidates: pl.DataFrame, budget: int, params: AutoParams) -> dict:
    """The params `arm` runs this round with: premem's adaptive threshold where that is on, else none."""
    if arm != "premem" or not params.adapt_threshold:
        return {}
    threshold = adaptive_threshold(candidates, budget, params)
    return {} if threshold is None else {"threshold": threshold}


def decide(params: AutoParams, records: list[RoundRecord], candidates: pl.DataFrame, default_budget: int, *,
           seed: int, round_: int) -> Decision:
    """The decision for round `round_` of the auto chain, after `records` (round 0 first, then its own rounds)."""
    history = rewards(records, paired=params.reward == "paired")
    policy = params.make_policy()
    arms = list(params.arms)
    before = policy.probabilities(history.filter(pl.col("round") < int(history["round"].max())) if history.height
                                  else history, arms, seed=derived_seed("auto-before", seed, round_))
    after = policy.probabilities(history, arms, seed=derived_seed("auto-probabilities", seed, round_))
    last = records[-1]
    gains = [r["reward"] for r in history.iter_rows(named=True)]
    budget = default_budget
    if params.grow_budget and len(records) >= 2 and gains and gains[-1] > 0:
        budget = 2 * (records[-1].n_examples - records[-2].n_examples)
    if not params.generate:  # a generator can make more items than the pool has left
        budget = min(budget, candidates.height)
    budget = max(0, budget)
    if params.max_examples is not None:
        budget = min(budget, max(0, params.max_examples - last.n_examples))
    noise = stopping.dev_noise(last.dev_accuracy or 0.0, last.dev_graded)
    state = stopping.StopState(n_examples=last.n_examples, dev_accuracy=last.dev_accuracy, gains=gains, noise=noise,
                               seconds=sum(r.seconds for r in records), unused=candidates.height, params=params)
    checks = [rule(state) for rule in stopping.STOPPING_RULES.values()]
    fired = next((c for c in checks if c.stop), None)
    if any(r.stopped for r in records):
        fired = stopping.StopCheck("stopped_before", True, {"round": next(r.round for r in records if r.stopped)})
    arm = None if fired else choose(after, seed=derived_seed("auto-choice", seed, round_))
    threshold = arm_params(arm, candidates, budget, params).get("threshold") if arm else None
    post = policy.posterior(history, arms) if hasattr(policy, "posterior") else {}
    return Decision(
        round=round_, arm=arm, budget=0 if fired else budget, threshold=threshold, probabilities_before=before,
        probabilities_after=after, expected_reward=post.get(arm, (None,))[0] if arm else None,
        realized_reward_last=gains[-1] if gains else None, stop=fired is not None,
        stop_reason=fired.rule if fired else None, checks=[asdict(c) for c in checks],
        evidence={"n_examples": last.n_examples, "dev_accuracy": last.dev_accuracy, "dev_noise": noise,
                  "unused_pool_items": candidates.height, "rewards": history.to_dicts(),
                  "posterior": {a: {"mean": m, "sd": s} for a, (m, s) in post.items()}})
