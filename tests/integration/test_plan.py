"""The step plan: every strategy shares round 0, each step comes after the step it reads, random runs the
i.i.d. extension rounds."""

import pytest

from loop.config import build_config
from loop.run.plan import Step, plan_steps, rounds_of
from loop.schema import SHARED_STRATEGY

pytestmark = pytest.mark.integration


def test_plan_is_a_valid_order_of_the_step_dag():
    cfg = build_config("default")
    steps = plan_steps(cfg)
    position = {s: i for i, s in enumerate(steps)}
    assert len(position) == len(steps)  # no step twice
    for step in steps:
        if step.parent is not None:
            assert position[step.parent] < position[step]
    n_rounds = {s: len(rounds_of(cfg, s, cfg.data.n_seeds)) for s in cfg.selection.strategy_names}
    assert n_rounds["random"] == len(cfg.selection.budgets) + 2  # the i.i.d. extension: two rounds by default
    # ... reaching 3x the examples a strategy ends with (the seeds + every budget).
    final = cfg.data.n_seeds + sum(cfg.selection.budgets)
    assert cfg.data.n_seeds + sum(rounds_of(cfg, "random", cfg.data.n_seeds)) == 3 * final
    expected = len(cfg.seeds) * (1 + sum(n_rounds.values()))
    assert len(steps) == expected
    assert [s for s in steps if s.round == 0] == [Step(seed, SHARED_STRATEGY, 0) for seed in cfg.seeds]


def test_parents():
    assert Step(3, "premem", 1).parent == Step(3, SHARED_STRATEGY, 0)
    assert Step(3, "premem", 2).parent == Step(3, "premem", 1)
    assert Step(3, SHARED_STRATEGY, 0).parent is None
