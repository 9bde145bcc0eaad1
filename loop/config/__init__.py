"""One typed, frozen run configuration; presets are YAML files of overrides on top of its defaults.

`RunConfig` is the single parameter of the `curation-loop` Prefect flow and of the CLI. Unknown keys are
errors everywhere (`extra="forbid"`), so a typo stops the run before any training, naming the field.
A config may name a `preset` (a file in `loop/presets/`): its values are applied first and every key
given alongside it overrides them.

One module per section (data, model, train, sampling, dynamics, selection, analysis, scale, tracking), the whole in
`run`, presets and override parsing in `presets`. The config is the flow's parameter and the CLI's (README), so its
classes and `build_config` are named here too: `from loop.config import RunConfig` is the public way in.
"""

from loop.config.analysis import AnalysisConfig, RobustnessConfig, SweepRunConfig
from loop.config.base import Strict
from loop.config.data import (ROLES, SOURCE_FIELDS, SOURCE_TASK, ColumnsConfig, DataConfig, DataSource,
                              PoolSourceConfig, SplitsConfig)
from loop.config.dynamics import DynamicsConfig, EvalConfig, TauGrid
from loop.config.model import LoraSettings, ModelConfig
from loop.config.presets import PRESET_DIR, deep_merge, load_preset, parse_override, read_yaml
from loop.config.run import RunConfig, build_config
from loop.config.sampling import SamplingConfig, VLLMConfig
from loop.config.scale import ScaleConfig, ScoringShardsConfig
from loop.config.selection import SelectionConfig, StrategyConfig
from loop.config.tracking import TRACKERS, TrackingConfig
from loop.config.train import TrainConfig

__all__ = ["PRESET_DIR", "ROLES", "SOURCE_FIELDS", "SOURCE_TASK", "AnalysisConfig", "ColumnsConfig", "DataConfig",
           "DataSource", "DynamicsConfig", "EvalConfig", "LoraSettings", "ModelConfig", "PoolSourceConfig",
           "RobustnessConfig", "RunConfig", "SamplingConfig", "ScaleConfig", "ScoringShardsConfig", "SelectionConfig",
           "SplitsConfig", "Strict", "StrategyConfig", "SweepRunConfig", "TRACKERS", "TauGrid", "TrackingConfig",
           "TrainConfig", "VLLMConfig", "build_config", "deep_merge", "load_preset", "parse_override", "read_yaml"]
