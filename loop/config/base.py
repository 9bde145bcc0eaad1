"""The base of every config section: frozen, and unknown keys are errors (a typo stops the run, naming the field)."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
