"""The stages of one step, in the order `Engine.run_step` runs them: select the batch, train from the base while
tracking dynamics (and, at round 0 of a run with an auto threshold, calibrate it), compute the signals the next
round reads, evaluate on the test (and dev) split, commit the step folder atomically. Each stage is a function of
the run context and the step; what one stage hands the next is named (`Trained`, `StepRecord`)."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import polars as pl

import loop.control.rounds as auto_rounds
from loop import faults
from loop.control.controller import AUTO
from loop.dynamics.ledger import premem_accuracy
from loop.dynamics.threshold import calibrate_round, calibration_record, flag_memorized
from loop.dynamics.tracking import DynamicsTracker
from loop.evaluation import evaluate
from loop.model import trackers
from loop.model.training import train_round
from loop.run.context import RunContext
from loop.run.plan import Step, matched_epochs, matched_examples, rounds_of
from loop.schema import COMPUTE_MATCHED
from loop.seeds import derived_seed, dev_sampling_seed, round_train_seed
from loop.selection import choose_batch
from loop.signals import compute as signal_store
from loop.store import layout


@dataclass
class StepRecord:
    """What a step records as it runs: step.json's fields (`info`) and each stage's wall seconds."""

    step: Step
    info: dict = field(default_factory=dict)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self):
        self.info |= {"seed": self.step.seed, "strategy": self.step.strategy, "round": self.step.round}

    @contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        yield
        self.timings.append((stage, time.perf_counter() - started))

    def split_off(self, stage: str, part: str, seconds: float) -> None:
        """Book `seconds` of `stage`'s time as their own stage `part` (a stage that ran other work inside it)."""
        if seconds <= 0:
            return
        self.timings = [(s, t - seconds if s == stage else t) for s, t in self.timings] + [(part, seconds)]

    def timing_frame(self) -> pl.DataFrame:
        step = self.step
        return pl.DataFrame({"strategy": step.strategy, "seed": step.seed, "round": step.round,
                             "stage": [t[0] for t in self.timings], "seconds": [t[1] for t in self.timings]})


@dataclass
class Trained:
    """What training a step's model left: the model, the rows it saw (`examples`) and trained on (`train`), the
    dynamics ledger flagged under the step's threshold `tau`, the tracker, the checkpoint signals it gathered, and
    the experiment trackers' run of the round (`tracker_run`, None without tracking.report_to), which the commit
    logs the round's figures to."""

    model: object
    examples: pl.DataFrame
    train: pl.DataFrame
    n_examples: int
    ledger: pl.DataFrame
    tau: object
    tracker: DynamicsTracker
    per_checkpoint: dict
    calibration: object | None
    tracker_run: trackers.TrackerRun | None = None


def tag(step: Step) -> str:
    """The checkpoint name prefix of a step (unique within a run: backends name loaded adapters by it)."""
    return f"s{step.seed}-{step.strategy}-r{step.round}"


def read_back(ctx: RunContext, step: Step) -> dict:
    """A finished step's step.json, its tables checked against their checksums (a resume reads back only what was
    written)."""
    folder = ctx.store.step_dir(step.seed, step.strategy, step.round)
    ctx.store.verify(folder)
    return json.loads((folder / layout.STEP_RECORD).read_text())


# -- select ------------------------------------------------------------------------------------------
def select(ctx: RunContext, step: Step, used: list[str], info: dict) -> tuple[list[str], pl.DataFrame | None]:
    """The pool items round `step.round` adds (none at round 0) and the items the auto controller generated for
    it (None if none); records the selection's summary in `info`."""
    if step.round == 0 or step.strategy == COMPUTE_MATCHED:
        return [], None
    faults.reached("selection.select")
    budget = rounds_of(ctx.cfg, step.strategy, ctx.n_seeds(step.seed))[step.round - 1]
    cands = ctx.candidates(step, used)
    spec = ctx.cfg.selection.spec(step.strategy)
    name, params = spec.name, spec.params
    generated = None
    if name == AUTO:  # the controller picks the strategy (and its threshold, and the budget) of this round
        chosen_round = auto_rounds.select(ctx, step, used, cands, budget, params, info)
        if chosen_round is None:
            return [], None
        name, params, budget, cands, generated = chosen_round
    batch, scores = choose_batch(cands, name, params, budget, replicate=step.seed, round_=step.round,
                                 selected_before=tuple(used), n_seeds=ctx.n_seeds(step.seed))
    info |= {"budget": budget, "n_candidates": cands.height, "score_mean_all": float(scores.mean()),
             "score_mean_selected": float(scores.filter(cands["id"].is_in(batch)).mean())}
    return batch, generated


def book_lookahead(record: StepRecord) -> None:
    """The auto controller's lookahead ran inside the select stage: its probes' seconds become the `lookahead` stage,
    so the compute table counts the extra fine-tunes on their own line and select keeps only its own time."""
    record.split_off("select", "lookahead", auto_rounds.lookahead_seconds(record.info))


# -- train and track ---------------------------------------------------------------------------------
def calibrates(ctx: RunContext, step: Step) -> bool:
    """Round 0 calibrates an auto threshold for its replicate; every later round reads it."""
    return ctx.cfg.dynamics.auto_tau and step.round == 0


def train_and_track(ctx: RunContext, step: Step, used: list[str], batch: list[str], generated: pl.DataFrame | None,
                    record: StepRecord) -> Trained:
    """Fine-tune the base on the seeds and everything selected so far, recording dynamics at the epoch checkpoints;
    at round 0 of a run with an auto threshold, calibrate it there. The ledger comes back flagged."""
    examples = ctx.rows(step, generated)
    train = examples.filter((pl.col("split") == "seed") | pl.col("id").is_in(set(used) | set(batch)))
    n_examples = train.height
    if step.strategy == COMPUTE_MATCHED:
        # Stands at the number of examples whose optimizer steps it took (the seed set trained longer).
        n_examples = matched_examples(ctx.cfg, ctx.n_seeds(step.seed), step.round)
        record.info["epochs"] = matched_epochs(ctx.cfg, ctx.n_seeds(step.seed), step.round)
    tracker_run = trackers.round_run(ctx.cfg, ctx.store.tracking_dir(), step.strategy, step.seed, step.round)
    model, ledger, tracker, train_seconds, per_checkpoint = _train(ctx, step, train, tracker_run)
    record.timings += [("train", train_seconds), *tracker.stage_seconds.items()]
    calibration = None
    if calibrates(ctx, step):
        calibration = calibrate_round(ctx.cfg, ledger, tracker.checkpoint_accuracy(), ctx.examples(step.seed))
        record.info["tau_calibration"] = calibration_record(ctx.cfg, calibration)
    tau = ctx.tau(step.seed, calibration.shift if calibration else None)
    return Trained(model, examples, train, n_examples, flag_memorized(ledger, tau), tau, tracker, per_checkpoint,
                   calibration, tracker_run)


def _train(ctx: RunContext, step: Step, train: pl.DataFrame, tracker_run: trackers.TrackerRun | None):
    """Train with the tracker and `tracker_run` attached; (model, unflagged ledger, tracker, train seconds, signals)."""
    cfg = ctx.cfg
    tracked = train.filter(pl.col("split") == "seed") if cfg.dynamics.track == "seeds" else train
    next_round = ctx.next_signals(step)
    sample = cfg.dynamics.record == "every_round" or any(
        p.reads_samples for p in ctx.providers(next_round, ("round",)))
    calibrating = calibrates(ctx, step)
    # Calibrating reads acc_j at every checkpoint and the dev accuracy beside it; the threshold is not known yet.
    tau = None if calibrating else ctx.tau(step.seed)
    held_out = {"dev": ctx.split(step.seed, "dev")} if calibrating else None
    train_seed = round_train_seed(step.seed)
    if step.strategy == COMPUTE_MATCHED:
        epochs = matched_epochs(cfg, ctx.n_seeds(step.seed), step.round)
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs})})
    measure, per_checkpoint = signal_store.at_checkpoints(ctx, step, ctx.examples(step.seed),
                                                          ctx.providers(next_round, ("checkpoint",)))
    tracker = DynamicsTracker(cfg, ctx.tokenizer, tracked, tau, seed=train_seed, backend=ctx.backend,
                              tag=tag(step), sample=sample or calibrating, sample_all=calibrating,
                              held_out=held_out, on_checkpoint=measure)
    model, train_seconds = train_round(cfg, ctx.tokenizer, train, seed=train_seed % (2**31),
                                       device=ctx.device, tracker=tracker, tracker_run=tracker_run)
    ledger = tracker.ledger().with_columns(
        strategy=pl.lit(step.strategy), seed=pl.lit(step.seed), round=pl.lit(step.round))
    return model, ledger, tracker, train_seconds, per_checkpoint


# -- signals and evaluation (under the bound final model) ----------------------------------------------
def signals(ctx: RunContext, step: Step, trained: Trained, bound) -> pl.DataFrame:
    """The signals the next round reads, from the final model and the ledger (`loop.signals.compute`)."""
    return signal_store.after_round(ctx, step, trained.examples, bound, trained.ledger, trained.tau,
                                    ctx.next_signals(step), trained.per_checkpoint)


def evaluate_step(ctx: RunContext, step: Step, trained: Trained, bound, info: dict) -> dict:
    """Test accuracy of the final model (and dev accuracy where the auto controller reads it, into `info`)."""
    test = trained.examples.filter(pl.col("split") == "test")
    scores = evaluate(ctx.cfg, bound.sampler, test, seed=derived_seed("eval", step.seed))
    if ctx.measures_dev:
        dev = evaluate(ctx.cfg, bound.sampler, ctx.split(step.seed, "dev"),
                       seed=dev_sampling_seed(step.seed, step.round))
        info |= {"dev_accuracy": dev["accuracy"], "dev_graded": dev["n_questions"] * dev["n_samples"]}
    return scores


# -- commit --------------------------------------------------------------------------------------------
def summarize(record: StepRecord, trained: Trained, batch: list[str], scores: dict) -> None:
    """The step's numbers into step.json's fields."""
    record.info |= {"n_examples": trained.n_examples, "n_trained": trained.train.height, "n_selected": len(batch),
                    **dynamics_summary(trained.ledger, trained.tau),
                    "dynamics_sequences_sampled": trained.tracker.sampled,
                    "dynamics_sequences_if_all": trained.tracker.sampled_if_all,
                    "accuracy": scores["accuracy"], "test_unparseable": scores["unparseable"]}


def commit(ctx: RunContext, step: Step, record: StepRecord, trained: Trained, batch: list[str], signal_frame,
           scores: dict, generated: pl.DataFrame | None) -> None:
    """Write the step folder atomically (its tables, step.json last); prune kept models where asked; then the round's
    figures go to the experiment trackers."""
    evals = pl.DataFrame([{"strategy": step.strategy, "seed": step.seed, "round": step.round,
                           "n_examples": trained.n_examples,
                           **{k: v for k, v in scores.items() if k != "unparseable"}}])
    timing_frame = record.timing_frame()
    record.info["seconds"] = float(timing_frame["seconds"].sum())
    extra = {layout.TAU_CURVE: trained.calibration.curve} if trained.calibration is not None else {}
    if generated is not None:
        extra[layout.GENERATED] = generated
    model = trained.model
    writer = (lambda path: model.save_pretrained(path)) if ctx.cfg.save_models else None
    ctx.store.commit_step(
        step.seed, step.strategy, step.round,
        {layout.SELECTED: pl.DataFrame({"id": batch}, schema={"id": pl.String}), layout.LEDGER: trained.ledger,
         layout.SIGNALS: signal_frame, layout.EVAL: evals, layout.TIMINGS: timing_frame, **extra},
        record.info, model_writer=writer)
    if writer is not None and ctx.cfg.keep_models == "last_and_best":
        ctx.store.prune_models(step.seed, step.strategy)
    # After the commit: a tracker never shows a round the run store lacks (a step killed before its commit is
    # trained again, and its tracker run with it).
    trackers.log_round(trained.tracker_run, record.info)


def commit_stopped(ctx: RunContext, step: Step, record: StepRecord) -> dict:
    """A round the auto controller stopped before (`loop.control.rounds.commit_stopped`)."""
    return auto_rounds.commit_stopped(ctx.store, step, record.info, record.timings)


def dynamics_summary(ledger: pl.DataFrame, tau) -> dict:
    if not ledger.height:
        return {}
    last = ledger.filter(pl.col("epoch") == ledger["epoch"].max())
    out = {"memorized_last_epoch": float(last["memorized"].mean()),
           "median_nll_last_epoch": float(last["nll"].median())}
    if (last["n_samples"] > 0).all():
        out["train_accuracy_last_epoch"] = float((last["n_correct"] / last["n_samples"]).mean())
        out["premem_mean"] = float(premem_accuracy(ledger, tau)["premem"].mean())
    return out
