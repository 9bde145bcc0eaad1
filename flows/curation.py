"""The `curation-loop` Prefect flow: one task per loop step, all logic in `loop/`, report at the end.

Resumption is the run store's job (a finished step is read back, never recomputed), so tasks carry no
Prefect cache policy of their own.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from loop.config import RunConfig
from loop.engine import Engine, Step, plan_steps


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(config: RunConfig) -> None:
    Engine(config).prepare()


@task(name="step", task_run_name="{strategy} round {round_} (seed {seed})", cache_policy=NO_CACHE)
def run_step(config: RunConfig, seed: int, strategy: str, round_: int) -> dict:
    return Engine(config).run_step(Step(seed, strategy, round_))


@task(name="report", cache_policy=NO_CACHE)
def report(config: RunConfig) -> str:
    from reports.run import write_run_report

    return str(write_run_report(config.out_dir))


@flow(name="curation-loop", log_prints=True)
def curation_loop(config: RunConfig = RunConfig(preset="default")) -> str:
    """Train, score and select round by round for every strategy and paired seed; returns the report path."""
    prepare(config)
    for step in plan_steps(config):
        info = run_step(config, step.seed, step.strategy, step.round)
        print(f"{step.label}: {info.get('n_examples')} examples, test accuracy {info.get('accuracy', float('nan')):.3f}")
    path = report(config)
    print(f"report: {path}")
    return path
