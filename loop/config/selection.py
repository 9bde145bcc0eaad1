"""The selection section: the competing strategies (each a registered strategy, its params and label), the
budgets per round, and the i.i.d. extension of random's curve."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from loop.config.base import Strict


class StrategyConfig(Strict):
    """One competitor: a registered strategy, its params, and the label it runs and reports under (default: its
    name), so one strategy can compete with two settings, e.g. premem and premem with include_base: true."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @field_validator("label")
    @classmethod
    def _plain_label(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not all(c.isalnum() or c in "-_." for c in value)):
            raise ValueError(f"selection.strategies label {value!r} must be letters, digits, '-', '_' or '.'")
        if value in ("shared", "compute_matched"):
            raise ValueError(f"selection.strategies label {value!r} is reserved")
        return value

    @property
    def key(self) -> str:
        return self.label or self.name


class SelectionConfig(Strict):
    """Which strategies compete, and how many pool items each round adds (the same for every strategy)."""

    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [StrategyConfig(name=n) for n in ("random", "loss", "perplexity", "premem")]
    )
    budgets: list[int] = Field(default_factory=lambda: [64, 64], description="pool items added in rounds 1..R")
    iid_extra_budgets: list[int] | None = Field(
        None,
        description="extra rounds for `random` only, extending the i.i.d. reference curve past the last budget; "
        "null = two rounds reaching iid_reach x the examples a strategy ends with (geometric steps); [] = none",
    )
    compute_matched: bool = Field(
        False, description="also run the compute-matched reference: each round r trains the seed set alone for the "
        "optimizer steps of a strategy's round r (epochs x n_r / n_seeds), so the report shows whether a strategy "
        "beats merely training longer on the seeds")
    iid_reach: float = Field(
        3.0, ge=1.0, description="with iid_extra_budgets null: how far past the strategies' final number of examples "
        "the i.i.d. curve extends, so ratios up to this are measured rather than censored")

    def extension(self, n_seeds: int) -> list[int]:
        """Pool items the i.i.d. extension rounds add, for a seed set of `n_seeds` (see iid_extra_budgets)."""
        if self.iid_extra_budgets is not None:
            return list(self.iid_extra_budgets)
        final = n_seeds + sum(self.budgets)
        target = math.ceil(self.iid_reach * final)
        if target <= final:
            return []
        middle = max(final + 1, math.ceil(math.sqrt(final * target)))
        return [middle - final, target - middle] if target > middle else [target - final]

    @property
    def iid_rounds(self) -> int:
        """Number of extension rounds (known before the data, unlike their sizes)."""
        if self.iid_extra_budgets is not None:
            return len(self.iid_extra_budgets)
        return 0 if self.iid_reach <= 1.0 else 2

    @field_validator("strategies", mode="before")
    @classmethod
    def _names_to_configs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("budgets", "iid_extra_budgets")
    @classmethod
    def _positive(cls, value: list[int] | None, info: Any) -> list[int] | None:
        for i, b in enumerate(value or []):
            if b <= 0:
                raise ValueError(f"selection.{info.field_name}[{i}] must be > 0, got {b}")
        return value

    @model_validator(mode="after")
    def _random_always_runs(self) -> SelectionConfig:
        names = [s.key for s in self.strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"selection.strategies lists a strategy twice: {names} (give one a label)")
        if any(s.key == "random" and (s.name != "random" or s.params) for s in self.strategies):
            raise ValueError("selection.strategies: the label 'random' is the i.i.d. reference, plain random")
        if "random" not in names:
            # random is the i.i.d. baseline every ratio is measured against
            object.__setattr__(self, "strategies", [StrategyConfig(name="random"), *self.strategies])
        return self

    @property
    def strategy_names(self) -> list[str]:
        """The competitors' labels (a strategy's name unless a label is given), as steps and reports name them."""
        return [s.key for s in self.strategies]

    def spec(self, key: str) -> StrategyConfig:
        """The competitor labelled `key`."""
        for s in self.strategies:
            if s.key == key:
                return s
        raise KeyError(f"no strategy labelled {key!r} in selection.strategies ({self.strategy_names})")
