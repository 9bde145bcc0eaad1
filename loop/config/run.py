"""`RunConfig`, everything one comparison needs: each section (its own module in this package), the checks that
span sections, and a named preset applied under the given keys. `build_config`: preset, then YAML file, then dotted
overrides, validated once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from loop.config.analysis import AnalysisConfig
from loop.config.base import Strict
from loop.config.data import SOURCE_TASK, DataConfig
from loop.config.dynamics import DynamicsConfig, EvalConfig
from loop.config.model import ModelConfig
from loop.config.presets import deep_merge, load_preset, parse_override, read_yaml
from loop.config.sampling import SamplingConfig, VLLMConfig
from loop.config.scale import ScaleConfig
from loop.config.selection import SelectionConfig
from loop.config.tracking import TrackingConfig
from loop.config.train import TrainConfig


class RunConfig(Strict):
    """Everything one comparison needs: data, base model, training, dynamics, strategies, seeds, output."""

    preset: str | None = Field(None, description="name of a file in loop/presets/ applied under the given keys")
    name: str = "embedded-default"
    task: Literal["embedded", "gsm8k", "math"] = "embedded"
    out_dir: str = Field("runs/default", description="run store folder; reruns resume there")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="paired seeds")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    sampling: SamplingConfig = SamplingConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    evaluation: EvalConfig = EvalConfig()
    selection: SelectionConfig = SelectionConfig()
    vllm: VLLMConfig = VLLMConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    share_gpus: bool = Field(
        False, description="let several worker processes use one GPU; by default each worker holds a card of its own "
        "and a run with more workers than GPUs is refused")
    torch_threads: int | None = Field(None, gt=0, description="CPU threads for torch; null = torch's default")
    deterministic: bool = Field(
        False, description="deterministic kernels (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG, "
        "transformers' full_determinism): a retrained step repeats bit for bit on the same device and software, "
        "slower on a GPU; an operation without a deterministic kernel then raises instead of running")
    workers: int = Field(
        1, gt=0,
        description="steps run at once in separate processes (Prefect process pool); steps of one seed and "
        "strategy still run in order. On a small CPU, 2 workers x 1 torch thread beat 1 x 2.",
    )
    scale: ScaleConfig = ScaleConfig()
    tracking: TrackingConfig = Field(
        TrackingConfig(), description="experiment trackers (TensorBoard, W&B, MLflow) for training logs and per-round "
        "figures; not part of the run's stored config")
    save_models: bool = Field(False, description="keep each round's model/adapter in the run store")
    keep_models: Literal["all", "last_and_best"] = Field(
        "all", description="with save_models: all = every round's model; last_and_best = per (replicate, strategy) "
        "only the latest round's and the best test accuracy's (the others' model/ folders are removed as each "
        "round commits; their tables stay)")
    allow_resume_changes: bool = Field(
        False, description="resume a run store although library versions, base weights or data differ from its "
        "first start (the differences are recorded in the run's manifest); by default such a resume stops and says "
        "what changed. Not part of the run's stored config")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset"):
            return deep_merge(load_preset(data["preset"]), data)
        return data

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("seeds must list at least one seed")
        if len(set(value)) != len(value):
            raise ValueError(f"seeds lists a seed twice: {value}")
        return value

    @model_validator(mode="after")
    def _shards_run_transformers(self) -> RunConfig:
        if self.scale.scoring.runner != "none" and "vllm" in (self.sampling.engine, self.dynamics.nll_engine):
            raise ValueError(
                "scale.scoring.runner shards the transformers backend's work; a vLLM server batches on its own: "
                "with vLLM, set scale.scoring.runner: none (and spread runs over GPUs with scale.runs: deployments)")
        return self

    @model_validator(mode="after")
    def _task_fits_source(self) -> RunConfig:
        expected = SOURCE_TASK.get(self.data.source)
        if expected is not None and self.task != expected:
            raise ValueError(
                f"task {self.task!r} does not grade data.source {self.data.source!r}: set task: {expected}")
        return self

    @model_validator(mode="after")
    def _budget_fits_pool(self) -> RunConfig:
        # Other sources know their pool size only once loaded: loop.data.checks.check_examples checks it there.
        if self.data.source == "embedded":
            extension = self.selection.extension(self.data.n_seeds)
            needed = sum(self.selection.budgets) + sum(extension)
            if needed > self.data.pool_size:
                raise ValueError(
                    f"selection.budgets {self.selection.budgets} + the i.i.d. extension {extension} add {needed} pool "
                    f"items but the pool holds {self.data.pool_size} (data.n_seeds * data.pool_per_seed): raise "
                    "data.pool_per_seed, or lower selection.iid_reach or set selection.iid_extra_budgets")
        if self.analysis.robustness.run is not None and self.analysis.robustness.run >= len(self.analysis.runs):
            raise ValueError(f"analysis.robustness.run {self.analysis.robustness.run} is not an index of "
                             f"analysis.runs ({len(self.analysis.runs)} runs)")
        if self.dynamics.tau_mode == "style_floor" and self.data.source != "embedded":
            raise ValueError("dynamics.tau_mode 'style_floor' needs the embedded task (it knows each phrasing floor)")
        return self


def build_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: list[str] = ()
) -> RunConfig:
    """Preset, then the YAML file, then dotted overrides, validated once at the end."""
    data: dict[str, Any] = load_preset(preset) if preset else {}
    if config_file is not None:
        path = Path(config_file)
        loaded = read_yaml(path)
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must be a mapping of config keys")
        if loaded.get("preset"):
            data = deep_merge(data, load_preset(loaded.pop("preset")))
        data = deep_merge(data, loaded)
    for text in overrides:
        data = deep_merge(data, parse_override(text))
    data.pop("preset", None)
    if preset:
        data["preset"] = None
    return RunConfig.model_validate(data)
