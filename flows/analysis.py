"""The `predict-generalization` Prefect flow: the paper's analyses (one task per training run of the sweep, then the
report). All logic is in `loop.analysis`; resumption is the run store's (a finished run is read back)."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner
from tqdm.auto import tqdm

from flows.artifacts import publish_artifacts
from loop.analysis.sweep import Sweep, SweepRun, plan_runs
from loop.config import RunConfig
from loop.model.devices import check_workers


@task(name="prepare", cache_policy=NO_CACHE, log_prints=False)
def prepare(config: RunConfig) -> None:
    Sweep(config).prepare()


@task(name="training run", task_run_name="{label} (seed {seed})", cache_policy=NO_CACHE, log_prints=False)
def train_and_measure(config: RunConfig, seed: int, index: int, label: str) -> dict:
    sweep = Sweep(config)
    try:
        return sweep.run(next(r for r in plan_runs(config) if (r.seed, r.index) == (seed, index)))
    finally:
        sweep.close()


@task(name="analysis report", cache_policy=NO_CACHE, log_prints=False)
def report(config: RunConfig) -> str:
    from reports.analysis import write_analysis_report

    index = write_analysis_report(config.out_dir, config.scale.cache_dir)
    publish_artifacts(index)
    return str(index)


def _announce(run: SweepRun, info: dict) -> None:
    print(f"{run.label} (seed {run.seed}): {info.get('n_trained')} examples, {info.get('seconds', 0.0):.0f} s")


@flow(name="predict-generalization-runs")
def runs_in_parallel(config: RunConfig) -> None:
    prepared = prepare.submit(config)
    runs = plan_runs(config)
    futures = {run: train_and_measure.submit(config, run.seed, run.index, run.label, wait_for=[prepared])
               for run in runs}
    by_future = {id(f): r for r, f in futures.items()}
    for future in tqdm(as_completed(list(futures.values())), total=len(futures), desc="predict-generalization"):
        _announce(by_future[id(future)], future.result())


@flow(name="predict-generalization", log_prints=True)
def predict_generalization(config: RunConfig = RunConfig(preset="analyze-default")) -> str:
    """Fine-tune over the sweep of training configurations, measure every checkpoint, and report how well
    pre-memorization accuracy predicts test accuracy (tau calibrated on dev); returns the report path."""
    check_workers(config.workers, config.device, share_gpus=config.share_gpus)
    if config.workers > 1:
        runs_in_parallel.with_options(task_runner=ProcessPoolTaskRunner(max_workers=config.workers))(config)
    else:
        prepare(config)
        for run in tqdm(plan_runs(config), desc="predict-generalization", unit="run"):
            _announce(run, train_and_measure(config, run.seed, run.index, run.label))
    path = report(config)
    print(f"report: {path}")
    return path
