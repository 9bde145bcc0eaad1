"""The curation loop without any orchestrator: run one step of the plan (`loop.plan`), or all of them.

A step is (paired seed, strategy, round). Round 0 trains on the seed set alone and is shared by every
strategy (strategy name `shared`). Round r >= 1 of a strategy scores the unused pool with the signals
its previous round stored, selects `budgets[r-1]` items, retrains from the base on seeds + everything
selected so far, records learning dynamics, stores the signals the next round needs, and evaluates on
the test set. Steps are idempotent: a finished step is read back, never recomputed.

Models are measured through the run's backend (`loop.model.backends`: transformers in this process, or a vLLM
server), which samples and scores whatever checkpoint it is bound to.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import polars as pl
import torch

import loop.signals.registry as signals
from loop import faults
from loop.signals import compute as signal_store
from loop.signals.compute import PRE_TRAINING_SCOPES, TRAINING_SCOPES
import strategies.registry as registry
from loop.config import RunConfig
import loop.control.rounds as auto_rounds
from loop.control.controller import AUTO, AutoParams
from loop.metrics.calibration import calibrate, grid
from loop.data import check_examples, load_data, tau_base, tau_for
from loop.dynamics import memorized_flags, premem_accuracy
from loop.evaluation import evaluate
from loop.model.backends import Backend, close_backends, open_backend, sampling_engine
from loop.model.devices import pick_device
from loop.model.lengths import check_lengths, context_size
from loop.model.loading import load_tokenizer, resolve_path, weights_file
from loop.model.precision import configure_torch, resolve_precision
from loop.model.training import train_round
from loop.plan import Step, n_rounds, plan_steps, rounds_of
from loop.schema import COMPUTE_MATCHED, SHARED_STRATEGY
from loop.seeds import derived_seed
from loop.selection import SELECTORS
from loop.store import RunStore, layout
from loop.store.files import file_sha256
from loop.tracking import DynamicsTracker



def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "polars", "prefect", "curation-loop"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


class Engine:
    """Runs the steps of one comparison against one run store."""

    def __init__(self, cfg: RunConfig, executor=None):
        """`executor` (`loop.model.shards.Executor`): where the shards of sampling and scoring run (the flows give
        Prefect's Ray or Dask task runner, `scale.scoring`); None = in this process."""
        self.cfg = cfg
        self.executor = executor
        self.store = RunStore(cfg.out_dir, cfg.scale.cache_dir)
        configure_torch(cfg)  # before CUDA starts
        self.device = pick_device(cfg.device, share_gpus=cfg.share_gpus)  # first: a GPU lease precedes CUDA
        self._tokenizer = None
        self._examples: dict[int, pl.DataFrame] = {}
        self._backend: Backend | None = None

    # -- shared inputs ---------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.cfg.model)
        return self._tokenizer

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.cfg, self.tokenizer, self.device, self.store.root / layout.BACKEND,
                                         self.executor)
        return self._backend

    def close(self) -> None:
        """Stop what the backend started (a vLLM server); the engine can be used again afterwards."""
        if self._backend is not None:
            close_backends()
            self._backend = None

    def examples(self, seed: int) -> pl.DataFrame:
        """The examples replicate `seed` trains, selects from and is tested on (its own draw of the data, unless
        data.per_replicate is off)."""
        if seed not in self._examples:
            stored = self.store.read_parquet(layout.examples_path(seed))
            if stored is None:
                self.prepare()
                stored = self.store.read_parquet(layout.examples_path(seed))
            self._examples[seed] = stored
        return self._examples[seed]

    def data_config(self, seed: int) -> RunConfig:
        """The config with replicate `seed`'s data seed: every replicate draws its own seed set, pool and test
        subset (data.per_replicate), all its strategies sharing that draw."""
        if not self.cfg.data.per_replicate:
            return self.cfg
        data = self.cfg.data.model_copy(update={"data_seed": derived_seed("data", self.cfg.data.data_seed, seed)})
        return self.cfg.model_copy(update={"data": data})

    def needs(self, strategy: str) -> set[str]:
        """The signal columns the strategy named `strategy` in the config reads, given its params."""
        if strategy == COMPUTE_MATCHED:
            return set()
        spec = self.cfg.selection.spec(strategy)
        if spec.name == AUTO:  # the controller reads what any of its arms may read
            return set().union(*(registry.resolve(a).needs_for({}) for a in AutoParams.parse(spec.params).arms))
        return set(registry.resolve(spec.name).needs_for(spec.params))

    @property
    def measures_dev(self) -> bool:
        """Whether every step also measures dev accuracy (the auto controller's reward reads it)."""
        return any(s.name == AUTO for s in self.cfg.selection.strategies)

    def all_needs(self) -> set[str]:
        return set().union(*(self.needs(s) for s in self.cfg.selection.strategy_names))

    def providers(self, columns: set[str], scopes: tuple[str, ...] | None = None) -> list[signals.Signal]:
        """The signal providers writing `columns` (and what they require), in order, of `scopes` if given."""
        found = signals.providers_for(columns)
        return [p for p in found if scopes is None or p.scope in scopes]

    def prepare(self) -> None:
        """Validate config + data, open the store, write each replicate's examples and base signals. Idempotent."""
        for spec in self.cfg.selection.strategies:
            # an unknown strategy (or arm, or auto param) stops the run here, before any training
            for name in AutoParams.parse(spec.params).arms if spec.name == AUTO else (spec.name,):
                registry.resolve(name)
        needed = self.providers(self.all_needs())  # so does a signal no provider writes
        seed_level = {p.name for p in needed if p.level == "seed"}
        drawn: dict[int, tuple[pl.DataFrame, object]] = {}
        for seed in self.cfg.seeds:
            examples = self.store.read_parquet(layout.examples_path(seed))
            report = None
            if examples is None:
                if not self.cfg.data.per_replicate and drawn:  # one draw, shared by every replicate
                    examples, report = next(iter(drawn.values()))
                else:
                    examples, report = load_data(self.data_config(seed))
                    # Lengths under the run's tokenizer, before any training: an example too long fails here, not
                    # in the round that happens to select it (and again at every resume).
                    examples, lengths = check_lengths(self.cfg, self.tokenizer, examples, self._context())
                    for reason, n in lengths.dropped.items():
                        report.drop(reason, n)
            check_examples(self.cfg, examples, seed_level)
            drawn[seed] = (examples, report)
        manifest = {
            "versions": _versions(),
            "machine": _machine(self.device),
            "model": self.cfg.model.name_or_path,
            "model_weights_sha256": _weights_hash(self.cfg),
            "precision": resolve_precision(self.cfg.model, self.cfg.train, self.device).name,
            "sampling_engine": sampling_engine(self.cfg, self.device),
            "data_per_replicate": self.cfg.data.per_replicate,
            "examples": {str(seed): {"rows": ex.height, "sha256": hashlib.sha256(ex.write_csv().encode()).hexdigest()}
                         for seed, (ex, _) in drawn.items()},
            "opened": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.store.open(self.cfg, manifest)
        for seed, (examples, report) in drawn.items():
            if report is not None:  # what loading did (skipped rows, links, contamination), kept with the run
                self.store.write_json(layout.data_report_path(seed), {
                    "summary": str(report), "counts": report.counts, "dropped": report.dropped,
                    "linked_to_nearest_seed": report.linked_nearest,
                    "validation": [{"source": v.source, "rows": v.n_rows, "valid": v.n_valid, "skipped": v.skipped,
                                    "problems": v.counts} for v in report.validation]})
                if report.contamination is not None and report.contamination.height:
                    self.store.write_parquet(layout.contamination_path(seed), report.contamination)
            if self.store.read_parquet(layout.examples_path(seed)) is None:
                self.store.write_parquet(layout.examples_path(seed), examples)
            self._examples[seed] = examples
        signal_store.pre_training(self, [p for p in needed if p.scope in PRE_TRAINING_SCOPES], drawn)

    def _context(self) -> int | None:
        from transformers import AutoConfig

        return context_size(AutoConfig.from_pretrained(resolve_path(self.cfg.model),
                                                       trust_remote_code=self.cfg.model.trust_remote_code))

    # -- one step --------------------------------------------------------------------------------
    def selected_before(self, step: Step) -> list[str]:
        ids: list[str] = []
        for r in range(1, step.round):
            ids += self.store.step_frame(step.seed, step.strategy, r, "selected")["id"].to_list()
        return ids

    def rows(self, step: Step, extra: pl.DataFrame | None = None) -> pl.DataFrame:
        """Replicate `step.seed`'s examples, plus the items the auto controller generated in this chain's earlier
        rounds (and `extra`, this round's), as pool rows with `source` generated."""
        frames = [self.examples(step.seed)]
        for r in range(1, step.round):
            path = self.store.step_dir(step.seed, step.strategy, r) / layout.table_file(layout.GENERATED)
            if self.store.is_done(step.seed, step.strategy, r) and path.exists():
                frames.append(pl.read_parquet(path))
        if extra is not None and extra.height:
            frames.append(extra)
        if len(frames) == 1:
            return frames[0]
        generated = [f.with_columns(split=pl.lit("pool"), source=pl.lit("generated")) for f in frames[1:]]
        return pl.concat([frames[0], *generated], how="diagonal_relaxed")

    def candidates(self, step: Step, used: list[str], extra: pl.DataFrame | None = None) -> pl.DataFrame:
        """Unused pool items with their text and metadata (question, solution, answer, level, ...) and the signal
        columns the strategy needs, sorted by id (order-independent). Seed-level signals reach generated items
        through their seed; a generated item without an item-level signal the strategy reads is left out."""
        pool = self.rows(step, extra).filter((pl.col("split") == "pool") & ~pl.col("id").is_in(used)).drop("split")
        pool = signal_store.join_candidates(self, step, pool, self.needs(step.strategy))
        return pool.sort("id")

    def _next_signals(self, step: Step) -> set[str]:
        """Round- and checkpoint-scope signal columns that the step after this one will read."""
        if step.strategy == SHARED_STRATEGY:
            wanted = self.all_needs()
        elif step.round < n_rounds(self.cfg, step.strategy):
            wanted = self.needs(step.strategy)
        else:
            return set()
        return {c for p in self.providers(wanted, TRAINING_SCOPES) for c in p.columns if c in wanted}

    def run_step(self, step: Step) -> dict:
        """Run `step` unless the store already holds it; returns its step.json record.

        Stages: select the batch, train from the base while tracking dynamics, compute the signals the next round
        reads, evaluate on the test set, commit everything atomically.
        """
        if self.store.is_done(step.seed, step.strategy, step.round):
            folder = self.store.step_dir(step.seed, step.strategy, step.round)
            self.store.verify(folder)  # a resume reads back only what was written
            return json.loads((folder / layout.STEP_RECORD).read_text())
        info: dict = {"seed": step.seed, "strategy": step.strategy, "round": step.round}
        timings: list[tuple[str, float]] = []

        started = time.perf_counter()
        used = self.selected_before(step)
        batch, generated = self._select(step, used, info)
        timings.append(("select", time.perf_counter() - started))
        if info.get("decision", {}).get("stop"):
            return auto_rounds.commit_stopped(self.store, step, info, timings)

        examples = self.rows(step, generated)
        train = examples.filter((pl.col("split") == "seed") | pl.col("id").is_in(set(used) | set(batch)))
        n_examples = train.height
        if step.strategy == COMPUTE_MATCHED:
            # Stands at the number of examples whose optimizer steps it took (the seed set trained longer).
            n_examples = self._matched_examples(step)
            info["epochs"] = self._epochs(step)
        model, ledger, tracker, train_seconds, per_checkpoint = self._train_and_track(step, train)
        timings += [("train", train_seconds), *tracker.stage_seconds.items()]
        calibration = self._calibrate(step, ledger, tracker) if self._calibrates(step) else None
        if calibration is not None:
            info["tau_calibration"] = _calibration_record(self.cfg, calibration)
        tau = self.tau(step.seed, calibration.shift if calibration else None)
        ledger = _flag(ledger, tau)
        with self.backend.bind(model, tag=f"{_tag(step)}-final") as bound:
            started = time.perf_counter()
            signals = signal_store.after_round(self, step, examples, bound, ledger, tau, self._next_signals(step),
                                               per_checkpoint)
            timings.append(("signals", time.perf_counter() - started))
            started = time.perf_counter()
            test = examples.filter(pl.col("split") == "test")
            scores_eval = evaluate(self.cfg, bound.sampler, test, seed=derived_seed("eval", step.seed))
            if self.measures_dev:
                dev = evaluate(self.cfg, bound.sampler, self._split(step.seed, "dev"),
                               seed=derived_seed("dev", step.seed, step.round))
                info |= {"dev_accuracy": dev["accuracy"], "dev_graded": dev["n_questions"] * dev["n_samples"]}
            timings.append(("eval", time.perf_counter() - started))

        info |= {"n_examples": n_examples, "n_trained": train.height, "n_selected": len(batch),
                 **_dynamics_summary(ledger, tau),
                 "dynamics_sequences_sampled": tracker.sampled, "dynamics_sequences_if_all": tracker.sampled_if_all,
                 "accuracy": scores_eval["accuracy"], "test_unparseable": scores_eval["unparseable"]}
        extra = {"tau_curve": calibration.curve} if calibration is not None else {}
        if generated is not None:
            extra["generated"] = generated
        self._commit(step, batch, ledger, signals, scores_eval, n_examples, timings, info, model, extra)
        return info

    # -- the memorization threshold --------------------------------------------------------------
    def _calibrates(self, step: Step) -> bool:
        """Round 0 calibrates an auto threshold for its replicate; every later round reads it."""
        return self.cfg.dynamics.auto_tau and step.round == 0

    def tau(self, seed: int, shift: float | None = None):
        """Replicate `seed`'s memorization threshold: the configured one, or the one its round 0 calibrated on dev."""
        examples = self.examples(seed)
        if shift is None and self.cfg.dynamics.auto_tau:
            record = self.store.read_record(seed, SHARED_STRATEGY, 0)
            shift = record["tau_calibration"]["shift"]
        return tau_for(self.cfg, examples, shift)

    def _calibrate(self, step: Step, ledger: pl.DataFrame, tracker: DynamicsTracker):
        """The threshold whose pre-memorization accuracy best predicts dev accuracy over round 0's checkpoints."""
        dyn = self.cfg.dynamics
        g = dyn.shift_grid()
        dev = tracker.checkpoint_accuracy().filter(pl.col("split") == "dev").with_columns(run=pl.lit("round-0"))
        return calibrate(ledger.with_columns(run=pl.lit("round-0")), dev,
                         tau_base(self.cfg, self.examples(step.seed)), grid(g.low, g.high, g.step))

    def _select(self, step: Step, used: list[str], info: dict) -> tuple[list[str], pl.DataFrame | None]:
        """The pool items round `step.round` adds (none at round 0) and the items the auto controller generated for
        it (None if none); records the selection's summary in `info`."""
        if step.round == 0 or step.strategy == COMPUTE_MATCHED:
            return [], None
        faults.reached("selection.select")
        cfg = self.cfg
        budget = rounds_of(cfg, step.strategy, self._n_seeds(step.seed))[step.round - 1]
        cands = self.candidates(step, used)
        spec = cfg.selection.spec(step.strategy)
        name, params = spec.name, spec.params
        generated = None
        if name == AUTO:  # the controller picks the strategy (and its threshold, and the budget) of this round
            chosen_round = auto_rounds.select(self, step, used, cands, budget, params, info)
            if chosen_round is None:
                return [], None
            name, params, budget, cands, generated = chosen_round
        chosen = registry.resolve(name)
        context = registry.StrategyContext(round=step.round, budget=budget, selected_before=tuple(used),
                                           n_seeds=self._n_seeds(step.seed))
        scores = chosen(cands, seed=derived_seed(step.seed, step.round), context=context, **params)
        # The tie-break salt is shared by all strategies of a (seed, round): paired draws.
        batch = SELECTORS[chosen.selector](cands, scores, budget, salt=f"{step.seed}:{step.round}")
        info |= {"budget": budget, "n_candidates": cands.height, "score_mean_all": float(scores.mean()),
                 "score_mean_selected": float(scores.filter(cands["id"].is_in(batch)).mean())}
        return batch, generated

    def _train_and_track(self, step: Step, train: pl.DataFrame):
        """Fine-tune the base on `train`, recording dynamics at the epoch checkpoints; (model, ledger, tracker, s)."""
        cfg = self.cfg
        tracked = train.filter(pl.col("split") == "seed") if cfg.dynamics.track == "seeds" else train
        next_round = self._next_signals(step)
        sample = cfg.dynamics.record == "every_round" or any(
            p.reads_samples for p in self.providers(next_round, ("round",)))
        calibrating = self._calibrates(step)
        # Calibrating reads acc_j at every checkpoint and the dev accuracy beside it; the threshold is not known yet.
        tau = None if calibrating else self.tau(step.seed)
        held_out = {"dev": self._split(step.seed, "dev")} if calibrating else None
        train_seed = derived_seed("train", step.seed)  # same for every strategy: paired training noise
        if step.strategy == COMPUTE_MATCHED:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": self._epochs(step)})})
        measure, per_checkpoint = signal_store.at_checkpoints(self, step, self.examples(step.seed),
                                                              self.providers(next_round, ("checkpoint",)))
        tracker = DynamicsTracker(cfg, self.tokenizer, tracked, tau, seed=train_seed, backend=self.backend,
                                  tag=_tag(step), sample=sample or calibrating, sample_all=calibrating,
                                  held_out=held_out, on_checkpoint=measure)
        model, train_seconds = train_round(cfg, self.tokenizer, train, seed=train_seed % (2**31),
                                           device=self.device, tracker=tracker)
        ledger = tracker.ledger().with_columns(
            strategy=pl.lit(step.strategy), seed=pl.lit(step.seed), round=pl.lit(step.round))
        return model, ledger, tracker, train_seconds, per_checkpoint

    def _split(self, seed: int, split: str) -> pl.DataFrame:
        rows = self.examples(seed).filter(pl.col("split") == split)
        if split == "dev" and rows.height == 0:
            raise ValueError("this run reads the dev split (dynamics threshold auto, or the auto strategy's rewards) and "
                             "has none: set data.n_dev (embedded) or data.splits.dev with data.dev_limit")
        return rows

    def _n_seeds(self, seed: int) -> int:
        return self.examples(seed).filter(pl.col("split") == "seed").height

    def _matched_examples(self, step: Step) -> int:
        """n_r = n_seeds + budgets[:r]: the examples a strategy's round r trains, whose optimizer steps the
        compute-matched round r takes on the seeds alone."""
        return self._n_seeds(step.seed) + sum(self.cfg.selection.budgets[: step.round])

    def _epochs(self, step: Step) -> int:
        """Epochs of the compute-matched round r: epochs x n_r / n_seeds, the optimizer steps of a strategy's round r
        on its n_r examples (rounded to the nearest epoch)."""
        return max(1, round(self.cfg.train.epochs * self._matched_examples(step) / self._n_seeds(step.seed)))

    def _commit(self, step: Step, batch, ledger, signals, scores_eval, n_examples, timings, info, model,
                extra: dict[str, pl.DataFrame]) -> None:
        evals = pl.DataFrame([{"strategy": step.strategy, "seed": step.seed, "round": step.round,
                               "n_examples": n_examples,
                               **{k: v for k, v in scores_eval.items() if k != "unparseable"}}])
        timing_frame = pl.DataFrame({"strategy": step.strategy, "seed": step.seed, "round": step.round,
                                     "stage": [t[0] for t in timings], "seconds": [t[1] for t in timings]})
        info["seconds"] = float(timing_frame["seconds"].sum())
        writer = (lambda path: model.save_pretrained(path)) if self.cfg.save_models else None
        self.store.commit_step(
            step.seed, step.strategy, step.round,
            {"selected": pl.DataFrame({"id": batch}, schema={"id": pl.String}), "ledger": ledger,
             "signals": signals, "eval": evals, "timings": timing_frame, **extra},
            info, model_writer=writer)
        if writer is not None and self.cfg.keep_models == "last_and_best":
            self.store.prune_models(step.seed, step.strategy)

    # -- everything ------------------------------------------------------------------------------
    def run_all(self, progress: bool = True) -> None:
        from tqdm.auto import tqdm

        self.prepare()
        steps = plan_steps(self.cfg)
        bar = tqdm(steps, desc="curation-loop", unit="step", disable=not progress)
        try:
            for step in bar:
                bar.set_postfix_str(step.label)
                self.run_step(step)
        finally:
            self.close()


def _tag(step: Step) -> str:
    """The checkpoint name prefix of a step (unique within a run: backends name loaded adapters by it)."""
    return f"s{step.seed}-{step.strategy}-r{step.round}"


def _machine(device: torch.device) -> dict:
    out = {"platform": platform.platform(), "processor": platform.processor(), "device": str(device),
           "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def _calibration_record(cfg: RunConfig, calibration) -> dict:
    """What round 0 chose, in the config's own terms (tau, or floor_scale), for step.json and the report."""
    absolute = cfg.dynamics.tau_mode == "absolute"
    name, value = ("tau", calibration.shift) if absolute else ("floor_scale", float(np.exp(calibration.shift)))
    return {"parameter": name, "value": value, "shift": calibration.shift, "plateau": list(calibration.plateau),
            "r2_dev": calibration.r2_dev, "checkpoints": int(calibration.curve["n_points"].max())}


def _flag(ledger: pl.DataFrame, tau) -> pl.DataFrame:
    return memorized_flags(ledger, tau) if ledger.height else ledger


def _dynamics_summary(ledger: pl.DataFrame, tau) -> dict:
    if not ledger.height:
        return {}
    last = ledger.filter(pl.col("epoch") == ledger["epoch"].max())
    out = {"memorized_last_epoch": float(last["memorized"].mean()),
           "median_nll_last_epoch": float(last["nll"].median())}
    if (last["n_samples"] > 0).all():
        out["train_accuracy_last_epoch"] = float((last["n_correct"] / last["n_samples"]).mean())
        out["premem_mean"] = float(premem_accuracy(ledger, tau)["premem"].mean())
    return out


def _weights_hash(cfg: RunConfig) -> str | None:
    path = weights_file(cfg.model)
    return file_sha256(path) if path is not None else None
