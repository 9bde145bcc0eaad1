"""The run context: what a step's stages and every lower floor (signals, the controller, the analysis sweep) read of
a run. The config, the run store, the device, the tokenizer, the backend (opened on first use), each replicate's
examples, the signal providers the strategies need, and the step-level views of them (the rows a step sees, its
candidates, its threshold). Lower floors take a `RunContext`, never the `Engine` that runs the stages."""

from __future__ import annotations

import polars as pl

import loop.signals.registry as signals
import strategies.registry as registry
from loop.config import RunConfig
from loop.control.controller import AUTO, AutoParams
from loop.dynamics.threshold import tau_for
from loop.model.backends import close_backends, open_backend
from loop.model.inprocess import Backend
from loop.model.devices import pick_device
from loop.model.loading import load_tokenizer
from loop.model.precision import configure_torch
from loop.run.plan import Step, n_rounds
from loop.schema import COMPUTE_MATCHED, SHARED_STRATEGY
from loop.seeds import derived_seed
from loop.signals import compute as signal_store
from loop.signals.compute import TRAINING_SCOPES
from loop.store import RunStore, layout


class RunContext:
    """One comparison's run, as its steps read it. Cheap to build: the tokenizer, the backend and the examples are
    loaded on first use."""

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
        """Stop what the backend started (a vLLM server); the context can be used again afterwards."""
        if self._backend is not None:
            close_backends()
            self._backend = None

    def examples(self, seed: int) -> pl.DataFrame:
        """The examples replicate `seed` trains, selects from and is tested on (its own draw of the data, unless
        data.per_replicate is off), as `loop.run.prepare` stored them."""
        if seed not in self._examples:
            stored = self.store.read_parquet(layout.examples_path(seed))
            if stored is None:
                raise FileNotFoundError(f"{self.store.location} holds no examples of replicate {seed}: the run is not "
                                        "prepared (loop.run.prepare.prepare, or Engine.prepare)")
            self._examples[seed] = stored
        return self._examples[seed]

    def is_prepared(self, seed: int) -> bool:
        """Whether replicate `seed`'s examples are at hand (stored by `loop.run.prepare`)."""
        return seed in self._examples or self.store.read_parquet(layout.examples_path(seed)) is not None

    def remember_examples(self, seed: int, examples: pl.DataFrame) -> None:
        """Keep what preparation stored for replicate `seed`, so that no step reads it back."""
        self._examples[seed] = examples

    def data_config(self, seed: int) -> RunConfig:
        """The config with replicate `seed`'s data seed: every replicate draws its own seed set, pool and test
        subset (data.per_replicate), all its strategies sharing that draw."""
        if not self.cfg.data.per_replicate:
            return self.cfg
        data = self.cfg.data.model_copy(update={"data_seed": derived_seed("data", self.cfg.data.data_seed, seed)})
        return self.cfg.model_copy(update={"data": data})

    def split(self, seed: int, split: str) -> pl.DataFrame:
        rows = self.examples(seed).filter(pl.col("split") == split)
        if split == "dev" and rows.height == 0:
            raise ValueError("this run reads the dev split (dynamics threshold auto, or the auto strategy's rewards) "
                             "and has none: set data.n_dev (embedded) or data.splits.dev with data.dev_limit")
        return rows

    def n_seeds(self, seed: int) -> int:
        return self.examples(seed).filter(pl.col("split") == "seed").height

    # -- what the strategies read ----------------------------------------------------------------
    def needs(self, strategy: str) -> set[str]:
        """The signal columns the strategy named `strategy` in the config reads, given its params."""
        if strategy == COMPUTE_MATCHED:
            return set()
        spec = self.cfg.selection.spec(strategy)
        if spec.name == AUTO:  # the controller reads what any of its arms may read
            return set().union(*(registry.resolve(a).needs_for({}) for a in AutoParams.parse(spec.params).arms))
        return set(registry.resolve(spec.name).needs_for(spec.params))

    def all_needs(self, strategies: list[str] | None = None) -> set[str]:
        """What the strategies labelled `strategies` (default: every one in the config) read, together."""
        labels = self.cfg.selection.strategy_names if strategies is None else strategies
        return set().union(*(self.needs(s) for s in labels))

    @property
    def measures_dev(self) -> bool:
        """Whether every step also measures dev accuracy (the auto controller's reward reads it)."""
        return any(s.name == AUTO for s in self.cfg.selection.strategies)

    def providers(self, columns: set[str], scopes: tuple[str, ...] | None = None) -> list[signals.Signal]:
        """The signal providers writing `columns` (and what they require), in order, of `scopes` if given."""
        found = signals.providers_for(columns)
        return [p for p in found if scopes is None or p.scope in scopes]

    def next_signals(self, step: Step) -> set[str]:
        """Round- and checkpoint-scope signal columns that the step after this one will read."""
        if step.strategy == SHARED_STRATEGY:
            wanted = self.all_needs()
        elif step.round < n_rounds(self.cfg, step.strategy):
            wanted = self.needs(step.strategy)
        else:
            return set()
        return {c for p in self.providers(wanted, TRAINING_SCOPES) for c in p.columns if c in wanted}

    def tau(self, seed: int, shift: float | None = None):
        """Replicate `seed`'s memorization threshold: the configured one, or the one its round 0 calibrated on dev."""
        examples = self.examples(seed)
        if shift is None and self.cfg.dynamics.auto_tau:
            record = self.store.read_record(seed, SHARED_STRATEGY, 0)
            shift = record["tau_calibration"]["shift"]
        return tau_for(self.cfg, examples, shift)

    # -- what a step sees ------------------------------------------------------------------------
    def selected_before(self, step: Step) -> list[str]:
        ids: list[str] = []
        for r in range(1, step.round):
            ids += self.store.step_frame(step.seed, step.strategy, r, layout.SELECTED)["id"].to_list()
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
