"""The `curation-chain` flow: the rounds of one (replicate, strategy) in order, as one flow run, so that a work
pool's workers run a comparison's chains side by side (`scale.runs: deployments`; the comparison flow launches
them wave by wave, `loop.run.plan.chain_waves`). Every step is the engine's and lands in the shared run store; with
`scale.gpu_limit` each step holds a slot of that Prefect global concurrency limit while it runs."""

from __future__ import annotations

import contextlib

from prefect import flow
from prefect.concurrency.sync import concurrency

from flows.curation import run_step
from loop.config import RunConfig
from loop.run.plan import plan_chains, step_inputs
from loop.store import RunStore


def _slot(config: RunConfig):
    """A slot of the GPU limit for one step (strict: a limit that does not exist fails the step, naming it)."""
    if config.scale.gpu_limit is None:
        return contextlib.nullcontext()
    return concurrency(config.scale.gpu_limit, occupy=1, strict=True)


@flow(name="curation-chain", flow_run_name="{strategy} (seed {seed})", log_prints=True)
def curation_chain(config: RunConfig = RunConfig(preset="default"), seed: int = 0,
                   strategy: str = "shared") -> list[dict]:
    """Run the rounds of (`seed`, `strategy`) of the comparison `config` (`shared`: round 0); returns their records."""
    chain = next((c for c in plan_chains(config) if (c.seed, c.strategy) == (seed, strategy)), None)
    if chain is None:
        raise ValueError(f"the comparison in {config.out_dir} has no chain {strategy!r} for seed {seed}: its chains "
                         f"are {[c.label for c in plan_chains(config)]}")
    store = RunStore(config.out_dir, config.scale.cache_dir)
    records = []
    for step in chain.steps:
        missing = [s.label for s in step_inputs(config, step)
                   if s not in chain.steps and not store.is_done(s.seed, s.strategy, s.round)]
        if missing:
            raise RuntimeError(f"{step.label} reads {missing}, not finished: launch the chains wave by wave "
                               "(loop.run.plan.chain_waves), as the curation-loop flow does")
        with _slot(config):
            info = run_step(config, step.seed, step.strategy, step.round)
        print(f"{step.label}: {info.get('n_examples')} examples, "
              f"test accuracy {info.get('accuracy', float('nan')):.3f}")
        records.append(info)
    return records
