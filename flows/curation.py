"""The `curation-loop` Prefect flow: one task per loop step, all logic in `loop/`, report at the end.

Steps form a DAG (a step reads what its inputs stored: its parent step, and for the auto controller random's
previous round: `loop.run.plan.step_inputs`). With `workers > 1` the steps (and the preparation) run in a subflow on
Prefect's process pool, independent steps side by side, each worker process on a GPU of its own where there are
GPUs (the flow process itself never takes one); with one worker they run in order in this process. With
`scale.runs: deployments` each (replicate, strategy) chain is a flow run of the `curation-chain` deployment
(flows/chain.py) that a work pool's workers take, here or elsewhere. Resumption is the run store's job (a finished
step is read back, never recomputed), so tasks carry no Prefect cache policy of their own. Tasks do not log prints:
libraries inside a step print to buffers (datasets' fingerprinting disassembles functions with `print(file=...)`),
which would flood the log.
"""

from __future__ import annotations

import time

from prefect import flow, get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner
from tqdm.auto import tqdm

from flows.artifacts import publish_artifacts
from flows.shards import scoring_executor
from loop import faults
from loop.config import RunConfig
from loop.run.engine import Engine
from loop.run.plan import Step, chain_waves, plan_steps, step_inputs
from loop.model.devices import check_workers


@task(name="prepare", cache_policy=NO_CACHE, log_prints=False)
def prepare(config: RunConfig) -> None:
    faults.reached("prefect.task")
    Engine(config, scoring_executor(config)).prepare()


@task(name="step", task_run_name="{strategy} round {round_} (seed {seed})", cache_policy=NO_CACHE,
      log_prints=False)
def run_step(config: RunConfig, seed: int, strategy: str, round_: int) -> dict:
    faults.reached("prefect.task")
    return Engine(config, scoring_executor(config)).run_step(Step(seed, strategy, round_))


@task(name="report", cache_policy=NO_CACHE, log_prints=False)
def report(config: RunConfig) -> str:
    faults.reached("prefect.task")
    from reports.run import write_run_report

    index = write_run_report(config.out_dir, config.scale.cache_dir)
    publish_artifacts(index)
    return str(index)


def _announce(step: Step, info: dict) -> None:
    print(f"{step.label}: {info.get('n_examples')} examples, test accuracy {info.get('accuracy', float('nan')):.3f}")


@flow(name="curation-steps")
def run_steps_in_parallel(config: RunConfig) -> None:
    """Prepare in a worker, then submit every step, each waiting for its parent; the task runner runs the ready
    ones at once."""
    prepared = prepare.submit(config)
    futures: dict[Step, object] = {}
    for step in plan_steps(config):
        inputs = [futures[s] for s in step_inputs(config, step)] or [prepared]
        futures[step] = run_step.submit(config, step.seed, step.strategy, step.round, wait_for=inputs)
    by_future = {id(f): s for s, f in futures.items()}
    for future in tqdm(as_completed(list(futures.values())), total=len(futures), desc="curation-loop steps"):
        _announce(by_future[id(future)], future.result())


def run_chains_as_deployments(config: RunConfig) -> None:
    """Prepare here, then launch every (replicate, strategy) chain as a flow run of `scale.chain_deployment`, wave
    by wave (round 0 first: computed once, read by every chain of its replicate), waiting for each wave; a chain
    that does not complete fails the comparison, naming it."""
    prepare(config)
    payload = config.model_dump(mode="json")
    with get_client(sync_client=True) as client:
        for wave in chain_waves(config):
            runs = {run_deployment(config.scale.chain_deployment, timeout=0, flow_run_name=chain.label,
                                   parameters={"config": payload, "seed": chain.seed, "strategy": chain.strategy}).id:
                    chain for chain in wave}
            states = {}
            while len(states) < len(runs):
                time.sleep(config.scale.poll_s)
                for run_id in set(runs) - set(states):
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_final():
                        states[run_id] = state
                        print(f"{runs[run_id].label}: {state.name}")
            failed = [f"{runs[i].label} ({s.name}, flow run {i})" for i, s in states.items() if not s.is_completed()]
            if failed:
                raise RuntimeError(f"chains did not complete: {', '.join(failed)}; their logs are on the Prefect "
                                   "server. Rerunning the comparison resumes every finished step")


@flow(name="curation-loop", log_prints=True)
def curation_loop(config: RunConfig = RunConfig(preset="default")) -> str:
    """Train, score and select round by round for every strategy and paired seed; returns the report path."""
    if config.scale.runs == "deployments":
        run_chains_as_deployments(config)
        path = report(config)
        print(f"report: {path}")
        return path
    check_workers(config.workers, config.device, share_gpus=config.share_gpus)
    if config.workers > 1:
        runner = ProcessPoolTaskRunner(max_workers=config.workers)
        run_steps_in_parallel.with_options(task_runner=runner)(config)
    else:
        prepare(config)
        for step in tqdm(plan_steps(config), desc="curation-loop steps", unit="step"):
            _announce(step, run_step(config, step.seed, step.strategy, step.round))
    path = report(config)
    print(f"report: {path}")
    return path
