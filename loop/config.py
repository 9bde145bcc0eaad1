"""One typed, frozen run configuration; presets are YAML files of overrides on top of its defaults.

`RunConfig` is the single parameter of the `curation-loop` Prefect flow and of the CLI. Unknown keys are
errors everywhere (`extra="forbid"`), so a typo stops the run before any training, naming the field.
A config may name a `preset` (a file in `loop/presets/`): its values are applied first and every key
given alongside it overrides them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PRESET_DIR = Path(__file__).parent / "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Strict):
    """Where examples come from. `embedded` is the synthetic task shipped as code (no download)."""

    source: Literal["embedded"] = "embedded"
    n_seeds: int = Field(64, gt=0, description="seed problems (the original training set)")
    pool_per_seed: int = Field(6, gt=0, description="pool items generated per seed (linked by seed_id)")
    n_dev: int = Field(64, ge=0, description="dev problems (threshold calibration, never the test set)")
    n_test: int = Field(200, gt=0, description="test problems")
    min_steps: int = Field(2, ge=1)
    max_steps: int = Field(5, ge=1)
    data_seed: int = Field(0, description="seed of the generated data set, shared by every run")

    @model_validator(mode="after")
    def _steps_ordered(self) -> DataConfig:
        if self.min_steps > self.max_steps:
            raise ValueError(f"data.min_steps ({self.min_steps}) > data.max_steps ({self.max_steps})")
        return self

    @property
    def pool_size(self) -> int:
        return self.n_seeds * self.pool_per_seed


class LoraSettings(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ModelConfig(_Strict):
    """The base model every round retrains from. `embedded` is the small checkpoint shipped in loop/assets."""

    name_or_path: str = "embedded"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora: LoraSettings | None = Field(None, description="LoRA through peft; null = full fine-tuning")
    format: Literal["plain", "chat"] = Field("plain", description="plain = the paper's format; chat = the model's chat template")


class TrainConfig(_Strict):
    """Fine-tuning of one round (trl SFTTrainer), from the base model each time as in the paper."""

    epochs: int = Field(3, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(16, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(2.0, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    max_length: int = Field(1024, gt=0)


class SamplingConfig(_Strict):
    """How completions are drawn (for learning dynamics and for test accuracy)."""

    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(512, gt=0)
    batch_size: int = Field(256, gt=0, description="sequences per generate call")
    kv_cache: Literal["static", "dynamic"] = Field(
        "static", description="transformers KV cache; static avoids re-allocating the cache every decode step"
    )


class DynamicsConfig(_Strict):
    """Learning dynamics tracked at epoch checkpoints, and the memorization threshold.

    memorized at checkpoint k  <=>  log(mean target NLL_k) < tau   (= log(log PPL_k) < tau).
    `tau_mode = absolute` uses `tau` for every example; `style_floor` uses tau_i = log(floor_scale * floor_i),
    floor_i being the example's irreducible phrasing entropy per token (embedded task only).
    """

    n_samples: int = Field(5, gt=0, description="samples per trained example at each checkpoint")
    every_n_epochs: int = Field(1, gt=0, description="checkpoint spacing; the last epoch is always a checkpoint")
    track: Literal["seeds", "all"] = Field("seeds", description="which trained examples get dynamics")
    record: Literal["every_round", "when_selecting"] = Field(
        "every_round",
        description="sample at the checkpoints of every round, or only where premem drives the next selection",
    )
    tau_mode: Literal["absolute", "style_floor"] = "absolute"
    tau: float = Field(-2.4, description="log(log PPL) threshold; paper: GSM8K -2.4, MATH -1.7")
    floor_scale: float = Field(1.0, gt=0)

    @field_validator("tau", "floor_scale")
    @classmethod
    def _finite(cls, value: float, info: Any) -> float:
        if not math.isfinite(value):
            raise ValueError(f"dynamics.{info.field_name} must be a finite number, got {value}")
        return value


class EvalConfig(_Strict):
    n_samples: int = Field(4, gt=0, description="samples per test question; accuracy = mean over all samples")


class StrategyConfig(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class SelectionConfig(_Strict):
    """Which strategies compete, and how many pool items each round adds (the same for every strategy)."""

    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [StrategyConfig(name=n) for n in ("random", "loss", "perplexity", "premem")]
    )
    budgets: list[int] = Field(default_factory=lambda: [64, 64], description="pool items added in rounds 1..R")
    iid_extra_budgets: list[int] = Field(
        default_factory=list,
        description="extra rounds for `random` only, extending the i.i.d. reference curve past the last budget",
    )

    @field_validator("strategies", mode="before")
    @classmethod
    def _names_to_configs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("budgets", "iid_extra_budgets")
    @classmethod
    def _positive(cls, value: list[int], info: Any) -> list[int]:
        for i, b in enumerate(value):
            if b <= 0:
                raise ValueError(f"selection.{info.field_name}[{i}] must be > 0, got {b}")
        return value

    @model_validator(mode="after")
    def _random_always_runs(self) -> SelectionConfig:
        names = [s.name for s in self.strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"selection.strategies lists a strategy twice: {names}")
        if "random" not in names:
            # random is the i.i.d. baseline every ratio is measured against
            object.__setattr__(self, "strategies", [StrategyConfig(name="random"), *self.strategies])
        return self

    @property
    def strategy_names(self) -> list[str]:
        return [s.name for s in self.strategies]


class RunConfig(_Strict):
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
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(None, gt=0, description="CPU threads for torch; null = torch's default")
    save_models: bool = Field(False, description="keep each round's model/adapter in the run store")

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
    def _budget_fits_pool(self) -> RunConfig:
        needed = sum(self.selection.budgets) + sum(self.selection.iid_extra_budgets)
        if self.data.source == "embedded" and needed > self.data.pool_size:
            raise ValueError(
                f"selection.budgets (+ iid_extra_budgets) add {needed} pool items but the pool holds "
                f"{self.data.pool_size} (data.n_seeds * data.pool_per_seed)"
            )
        if self.dynamics.tau_mode == "style_floor" and self.data.source != "embedded":
            raise ValueError("dynamics.tau_mode 'style_floor' needs the embedded task (it knows each phrasing floor)")
        return self


def load_preset(name: str) -> dict[str, Any]:
    """The override dict stored in loop/presets/NAME.yaml."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ValueError(f"preset {name!r} not found in {PRESET_DIR}; known presets: {known}")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a preset must be a mapping of config keys")
    return loaded


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, merging nested mappings key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=value` -> {"a": {"b": value}}, the value parsed as YAML (so numbers and lists keep their type)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw)
    out: dict[str, Any] = {}
    node = out
    keys = dotted.strip().split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


def build_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: list[str] = ()
) -> RunConfig:
    """Preset, then the YAML file, then dotted overrides, validated once at the end."""
    data: dict[str, Any] = load_preset(preset) if preset else {}
    if config_file is not None:
        path = Path(config_file)
        loaded = yaml.safe_load(path.read_text()) or {}
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
