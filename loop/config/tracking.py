"""The tracking section: which experiment trackers watch a run (`loop.model.trackers`). How a run is watched, not
what is run: never stored with the run, so a run may resume with other trackers."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from loop.config.base import Strict

TRACKERS = ("tensorboard", "wandb", "mlflow")


class TrackingConfig(Strict):
    """Experiment trackers (`loop.model.trackers`): each round's training logs (trl's loss, learning rate, grad norm)
    and the loop's own per-round figures (test and dev accuracy, pre-memorization accuracy, memorized share,
    examples) go to the trackers named, one tracker run per round named STRATEGY/seed-S/round-R. How a run is
    watched, not what is run: logging changes no result, and the section is not part of the stored config (a run may
    resume with other trackers)."""

    report_to: list[str] = Field(
        default_factory=list, description="trackers, as trl/transformers name them: tensorboard (offline, needs the "
        "tensorboard package), wandb, mlflow (each needs its own package and login or tracking URI); [] = none")
    dir: str | None = Field(
        None, description="where offline trackers (tensorboard) write, one folder per round under it, "
        "named as its tracker run (strategy, seed-S, round-R: loop.store.layout.tracking_run); null = the run "
        "store's tracking/ folder (its local copy for a remote out_dir)")
    logging_steps: int = Field(
        10, gt=0, description="optimizer steps between two training log points (trl's logging_steps); the last step "
        "of a round is always logged")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # report_to=tensorboard on the command line

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in TRACKERS:
                raise ValueError(f"tracking.report_to names {name!r}, not a tracker the loop writes its per-round "
                                 f"figures to; known: {', '.join(TRACKERS)} ([] = none)")
        if len(set(value)) != len(value):
            raise ValueError(f"tracking.report_to names a tracker twice: {value}")
        return value
