"""The plan of a comparison: its steps (replicate, strategy, round), what each reads, and an order that runs the
longest chains first. Pure: no model, no store."""

from __future__ import annotations

from dataclasses import dataclass

from loop.config import RunConfig
from loop.control.controller import AUTO, AutoParams
from loop.schema import COMPUTE_MATCHED, SHARED_STRATEGY


@dataclass(frozen=True)
class Step:
    seed: int
    strategy: str
    round: int

    @property
    def label(self) -> str:
        return f"seed {self.seed} / {self.strategy} / round {self.round}"

    @property
    def parent(self) -> Step | None:
        """The step whose stored signals and selections this one reads (None for round 0)."""
        if self.round == 0:
            return None
        if self.round == 1:
            return Step(self.seed, SHARED_STRATEGY, 0)
        return Step(self.seed, self.strategy, self.round - 1)


def n_rounds(cfg: RunConfig, strategy: str) -> int:
    """Rounds after round 0 that `strategy` runs (random also runs the i.i.d. extension rounds)."""
    return len(cfg.selection.budgets) + (cfg.selection.iid_rounds if strategy == "random" else 0)


def planned_strategies(cfg: RunConfig) -> list[str]:
    """The strategies of the comparison, and the compute-matched reference when asked for."""
    return [*cfg.selection.strategy_names, *([COMPUTE_MATCHED] if cfg.selection.compute_matched else [])]


def rounds_of(cfg: RunConfig, strategy: str, n_seeds: int) -> list[int]:
    """Pool items added at rounds 1..R of `strategy`, for a seed set of `n_seeds` (the i.i.d. extension's sizes
    depend on it)."""
    extra = cfg.selection.extension(n_seeds) if strategy == "random" else []
    return [*cfg.selection.budgets, *extra]


def matched_examples(cfg: RunConfig, n_seeds: int, round_: int) -> int:
    """n_r = n_seeds + budgets[:r]: the examples a strategy's round r trains, whose optimizer steps the
    compute-matched round r takes on the seeds alone."""
    return n_seeds + sum(cfg.selection.budgets[:round_])


def matched_epochs(cfg: RunConfig, n_seeds: int, round_: int) -> int:
    """Epochs of the compute-matched round r: epochs x n_r / n_seeds, the optimizer steps of a strategy's round r
    on its n_r examples (rounded to the nearest epoch)."""
    return max(1, round(cfg.train.epochs * matched_examples(cfg, n_seeds, round_) / n_seeds))


def step_inputs(cfg: RunConfig, step: Step) -> list[Step]:
    """The steps whose stored results `step` reads: its parent, and for the auto controller with paired rewards,
    random's previous round of the same replicate (the reference of its last reward)."""
    if step.parent is None:
        return []
    inputs = [step.parent]
    if step.round >= 2 and step.strategy in cfg.selection.strategy_names:
        spec = cfg.selection.spec(step.strategy)
        if spec.name == AUTO and AutoParams.parse(spec.params).reward == "paired":
            inputs.append(Step(step.seed, "random", step.round - 1))
    return inputs


def plan_steps(cfg: RunConfig) -> list[Step]:
    """Every step of the comparison, in an order where each step's inputs come before it.

    Workers take ready steps in this order, so it puts the longest chains first: every replicate's round 0, then
    the strategies with the most rounds (random, with the i.i.d. extension), round by round, then the rest. A
    seed-by-seed order left the last replicate's extension rounds running alone at the end."""
    names = sorted(planned_strategies(cfg), key=lambda s: -n_rounds(cfg, s))  # stable: config order among equals
    steps = [Step(seed, SHARED_STRATEGY, 0) for seed in cfg.seeds]
    for strategy in names:
        steps += [Step(seed, strategy, r) for r in range(1, n_rounds(cfg, strategy) + 1) for seed in cfg.seeds]
    return steps


@dataclass(frozen=True)
class Chain:
    """The rounds one (replicate, strategy) runs in order: one run of a comparison (round 0 is the chain of
    strategy `shared`, which every other chain of its replicate reads)."""

    seed: int
    strategy: str
    steps: tuple[Step, ...]

    @property
    def label(self) -> str:
        return f"{self.strategy} (seed {self.seed})"


def plan_chains(cfg: RunConfig) -> list[Chain]:
    """The comparison's steps grouped into chains, in plan order."""
    grouped: dict[tuple[int, str], list[Step]] = {}
    for step in plan_steps(cfg):
        grouped.setdefault((step.seed, step.strategy), []).append(step)
    return [Chain(seed, strategy, tuple(sorted(steps, key=lambda s: s.round)))
            for (seed, strategy), steps in grouped.items()]


def chain_waves(cfg: RunConfig) -> list[list[Chain]]:
    """The chains in waves: every chain of a wave reads only chains of earlier waves (round 0 first, then the
    strategies, then the auto controllers that read random's rounds). Launching a wave once the one before has
    finished never leaves a worker waiting on a run that no worker is free to take."""
    chains = plan_chains(cfg)
    owner = {step: (c.seed, c.strategy) for c in chains for step in c.steps}
    reads = {(c.seed, c.strategy): {owner[i] for s in c.steps for i in step_inputs(cfg, s)} - {(c.seed, c.strategy)}
             for c in chains}
    waves, placed = [], set()
    while len(placed) < len(chains):
        wave = [c for c in chains if (c.seed, c.strategy) not in placed and reads[(c.seed, c.strategy)] <= placed]
        if not wave:
            raise ValueError("the chains of this plan read each other in a cycle")
        waves.append(wave)
        placed |= {(c.seed, c.strategy) for c in wave}
    return waves
