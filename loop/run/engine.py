"""The curation loop without any orchestrator: run one step of the plan (`loop.run.plan`), or all of them.

A step is (paired seed, strategy, round). Round 0 trains on the seed set alone and is shared by every
strategy (strategy name `shared`). Round r >= 1 of a strategy scores the unused pool with the signals
its previous round stored, selects `budgets[r-1]` items, retrains from the base on seeds + everything
selected so far, records learning dynamics, stores the signals the next round needs, and evaluates on
the test set. Steps are idempotent: a finished step is read back, never recomputed.

The stages are `loop.run.stages`; what they read of the run is the `RunContext` (`loop.run.context`). Models are
measured through the run's backend (`loop.model.backends`: transformers in this process, or a vLLM server), which
samples and scores whatever checkpoint it is bound to.
"""

from __future__ import annotations

from loop.config import RunConfig
from loop.run import stages
from loop.run.context import RunContext
from loop.run.plan import Step, plan_steps
from loop.run.prepare import ensure_prepared, prepare


class Engine:
    """Runs the steps of one comparison against one run store."""

    def __init__(self, cfg: RunConfig, executor=None):
        """`executor` (`loop.model.shards.Executor`): where the shards of sampling and scoring run (the flows give
        Prefect's Ray or Dask task runner, `scale.scoring`); None = in this process."""
        self.context = RunContext(cfg, executor)
        self.cfg, self.store = cfg, self.context.store

    def prepare(self) -> None:
        """Validate config + data, open the store, write each replicate's examples and base signals. Idempotent."""
        prepare(self.context)

    def close(self) -> None:
        """Stop what the backend started (a vLLM server); the engine can be used again afterwards."""
        self.context.close()

    def run_step(self, step: Step) -> dict:
        """Run `step` unless the store already holds it; returns its step.json record.

        Stages: select the batch, train from the base while tracking dynamics, compute the signals the next round
        reads, evaluate on the test set, commit everything atomically.
        """
        ctx = self.context
        if ctx.store.is_done(step.seed, step.strategy, step.round):
            return stages.read_back(ctx, step)
        ensure_prepared(ctx, step.seed)
        record = stages.StepRecord(step)
        with record.timed("select"):
            used = ctx.selected_before(step)
            batch, generated = stages.select(ctx, step, used, record.info)
        stages.book_lookahead(record)
        if record.info.get("decision", {}).get("stop"):
            return stages.commit_stopped(ctx, step, record)
        trained = stages.train_and_track(ctx, step, used, batch, generated, record)
        with ctx.backend.bind(trained.model, tag=f"{stages.tag(step)}-final") as bound:
            with record.timed("signals"):
                signals = stages.signals(ctx, step, trained, bound)
            with record.timed("eval"):
                scores = stages.evaluate_step(ctx, step, trained, bound, record.info)
        stages.summarize(record, trained, batch, scores)
        stages.commit(ctx, step, record, trained, batch, signals, scores, generated)
        return record.info

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
