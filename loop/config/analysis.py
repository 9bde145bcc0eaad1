"""The analysis section: the generalization-prediction sweep's training runs and the robustness check."""

from __future__ import annotations

from pydantic import Field, field_validator

from loop.config.base import Strict


class SweepRunConfig(Strict):
    """One training configuration of the generalization-prediction sweep: a separate run from the base model."""

    learning_rate: float | None = Field(None, gt=0, description="null = train.learning_rate")
    epochs: int | None = Field(None, gt=0, description="null = train.epochs")
    fraction: float = Field(1.0, gt=0, le=1, description="share of the seed set trained (a seeded random subset)")


class RobustnessConfig(Strict):
    """Paper section 4: training questions sampled again at a run's last checkpoint with a forced answer prefix."""

    prefixes: list[str] = Field(default_factory=lambda: ["First", "We know that"],
                                description="each forces the answer to begin with it; [] = no robustness analysis")
    n_samples: int | None = Field(None, gt=0, description="samples per question and prefix; null = dynamics.n_samples")
    max_examples: int | None = Field(1000, gt=0, description="at most this many training questions (paper: 1000)")
    run: int | None = Field(None, ge=0, description="index in analysis.runs of the run measured (and drawn as the "
                            "heat map); null = the full-data run with the most epochs")
    bins: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                              description="pre-memorization accuracy bin edges; the last bin is closed")

    @field_validator("prefixes")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        for i, prefix in enumerate(value):
            if not prefix.strip():
                raise ValueError(f"analysis.robustness.prefixes[{i}] is blank")
        return value

    @field_validator("bins")
    @classmethod
    def _edges(cls, value: list[float]) -> list[float]:
        if len(value) < 2 or any(b <= a for a, b in zip(value, value[1:])) or value[0] < 0 or value[-1] > 1:
            raise ValueError(f"analysis.robustness.bins must increase within [0, 1], got {value}")
        return value


class AnalysisConfig(Strict):
    """The paper's analyses (`curation-loop analyze`, flow `predict-generalization`): a sweep of training runs from
    the base, each recording at every epoch checkpoint every training example's NLL and sample accuracy, and the
    dev and test accuracy; R^2 of test accuracy against pre-memorization accuracy; tau calibrated on dev;
    robustness to a forced answer prefix. Each run is repeated for every entry of `seeds`."""

    runs: list[SweepRunConfig] = Field(
        default_factory=lambda: [SweepRunConfig(learning_rate=lr, epochs=e) for lr in (3e-5, 1e-4, 3e-4)
                                 for e in (1, 3)],
        description="training configurations; the paper: learning rates x epochs, plus half and quarter data")
    robustness: RobustnessConfig = RobustnessConfig()
    n_boot: int = Field(2000, ge=100, description="bootstrap replicates over runs for the R^2 intervals")

    @field_validator("runs")
    @classmethod
    def _some_runs(cls, value: list[SweepRunConfig]) -> list[SweepRunConfig]:
        if not value:
            raise ValueError("analysis.runs must list at least one training configuration")
        return value

    def robustness_run(self, default_epochs: int) -> int:
        """Index of the run the robustness analysis and the heat map read."""
        if self.robustness.run is not None:
            return self.robustness.run
        full = [i for i, r in enumerate(self.runs) if r.fraction == 1.0] or list(range(len(self.runs)))
        return max(full, key=lambda i: (self.runs[i].epochs or default_epochs, -i))
