"""The dynamics and evaluation sections: what is recorded at each epoch checkpoint, the memorization threshold
(configured, or calibrated on dev: the shift grid), and how many samples a test question gets."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from loop.config.base import Strict


class TauGrid(Strict):
    """Candidate thresholds low, low + step, ..., high for calibration."""

    low: float
    high: float
    step: float = Field(0.05, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TauGrid:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high < self.low:
            raise ValueError(f"dynamics.tau_grid needs finite low <= high, got {self.low}, {self.high}")
        return self


class DynamicsConfig(Strict):
    """Learning dynamics tracked at epoch checkpoints, and the memorization threshold.

    memorized at checkpoint k  <=>  log(mean target NLL_k) < tau   (= log(log PPL_k) < tau).
    `tau_mode = absolute` uses `tau` for every example; `style_floor` uses tau_i = log(floor_scale * floor_i),
    floor_i being the example's irreducible phrasing entropy per token (embedded task only).
    `auto` (tau in absolute mode, floor_scale in style_floor mode) calibrates the threshold on the dev split, never
    the test set (`loop.dynamics.calibration`): a curation run from its round-0 checkpoints, the analysis from its
    sweep; `tau_grid` lists the candidates (tau values, or log floor_scale values).
    """

    n_samples: int = Field(5, gt=0, description="samples per trained example at each checkpoint")
    every_n_epochs: int = Field(1, gt=0, description="checkpoint spacing; the last epoch is always a checkpoint")
    track: Literal["seeds", "all"] = Field("seeds", description="which trained examples get dynamics")
    record: Literal["every_round", "when_selecting"] = Field(
        "every_round",
        description="sample at the checkpoints of every round, or only where premem drives the next selection",
    )
    tau_mode: Literal["absolute", "style_floor"] = "absolute"
    tau: float | Literal["auto"] = Field(
        -2.4, description="log(log PPL) threshold; paper: GSM8K -2.4, MATH -1.7; auto = calibrated on dev")
    floor_scale: float | Literal["auto"] = Field(1.0, description="style_floor mode; auto = calibrated on dev")
    tau_grid: TauGrid | None = Field(
        None, description="candidates for auto: tau from low to high by step (absolute), or log floor_scale "
        "(style_floor); null = -6..1 by 0.05 (absolute), -1.5..1.5 by 0.05 (style_floor)")
    nll_batch_size: int = Field(
        64, gt=0, description="most sequences per teacher-forced NLL pass (64 is fastest on CPU)")
    nll_batch_tokens: int | None = Field(
        None, gt=0, description="most tokens (padding included) per NLL pass; null = 16k on CPU, 64k on a GPU")
    nll_async: bool | Literal["auto"] = Field(
        "auto", description="queue the NLL batches on the card without waiting on it (pinned uploads, no padding "
        "mask, one read-back per call); auto = on a GPU, off on a CPU (loop.model.scoring)")
    nll_cuda_graphs: bool = Field(
        False, description="replay the NLL scorer's backbone forward as CUDA graphs, one per 64-token width bucket, "
        "where the asynchronous scorer runs on a card (loop.model.nll_graphs); off by default: on one H100 it ran "
        "0.61x the eager scorer on 256 sequences, 0.34x on mixed lengths (each width's capture costs more than it "
        "saves)")
    nll_compile: bool = Field(
        False, description="compile each decoder layer for the NLL scorer's calls (loop.model.compiled_layers; "
        "undone after each call): 1.40x the eager scorer on one H100 on equal-length batches, a compile of some "
        "seconds once per process; off by default until measured on the loop's mixed lengths")
    nll_engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="teacher-forced NLL in this process (target positions only, chunked head, fp32 "
        "log-softmax) or through vLLM's prompt_logprobs")

    @field_validator("tau", "floor_scale")
    @classmethod
    def _finite(cls, value: float | str, info: Any) -> float | str:
        if value == "auto":
            return value
        if not math.isfinite(value):
            raise ValueError(f"dynamics.{info.field_name} must be a finite number or auto, got {value}")
        if info.field_name == "floor_scale" and value <= 0:
            raise ValueError(f"dynamics.floor_scale must be > 0, got {value}")
        return value

    @model_validator(mode="after")
    def _auto_fits_mode(self) -> DynamicsConfig:
        unused = "tau" if self.tau_mode == "style_floor" else "floor_scale"
        if getattr(self, unused) == "auto":
            used = "floor_scale" if unused == "tau" else "tau"
            raise ValueError(f"dynamics.{unused}: auto has no effect with tau_mode {self.tau_mode!r}, which reads "
                             f"dynamics.{used}: set dynamics.{used}: auto instead")
        return self

    @property
    def auto_tau(self) -> bool:
        """Whether the threshold of this tau_mode is calibrated on dev (`auto`)."""
        return (self.tau if self.tau_mode == "absolute" else self.floor_scale) == "auto"

    @property
    def fixed_shift(self) -> float | None:
        """The configured threshold as the shift on each example's base (`loop.dynamics.calibration`): tau in
        absolute mode, log(floor_scale) in style_floor mode; None where it is auto."""
        if self.auto_tau:
            return None
        return float(self.tau) if self.tau_mode == "absolute" else math.log(float(self.floor_scale))

    def shift_grid(self) -> TauGrid:
        if self.tau_grid is not None:
            return self.tau_grid
        return TauGrid(low=-6.0, high=1.0, step=0.05) if self.tau_mode == "absolute" else TauGrid(
            low=-1.5, high=1.5, step=0.05)


class EvalConfig(Strict):
    n_samples: int = Field(4, gt=0, description="samples per test question; accuracy = mean over all samples")
