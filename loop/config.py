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
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

PRESET_DIR = Path(__file__).parent / "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


DataSource = Literal["embedded", "gsm8k", "math", "file", "hf"]
ROLES = ("seed", "pool", "dev", "test")

# The fields each source reads. A field given for a source that does not read it is an error (a typo or a
# leftover from another preset would otherwise be ignored silently), and a dumped config carries only these,
# so an embedded run's stored config is the same as before real sources existed.
_EMBEDDED_FIELDS = ("n_seeds", "pool_per_seed", "n_dev", "n_test", "min_steps", "max_steps")
_REAL_FIELDS = ("splits", "pool", "link", "seed_limit", "pool_limit", "dev_limit", "test_limit",
                "skip_invalid", "contamination", "near_duplicate_threshold")
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "embedded": ("source", *_EMBEDDED_FIELDS, "data_seed", "per_replicate"),
    "gsm8k": ("source", "path", *_REAL_FIELDS, "data_seed", "per_replicate"),
    "math": ("source", "path", "name", "levels", *_REAL_FIELDS, "data_seed", "per_replicate"),
    "file": ("source", "path", "columns", *_REAL_FIELDS, "data_seed", "per_replicate"),
    "hf": ("source", "name", "config", "revision", "columns", *_REAL_FIELDS, "data_seed", "per_replicate"),
}
# The grading task each dataset's answers follow; a user's file or HF dataset may follow any.
SOURCE_TASK = {"embedded": "embedded", "gsm8k": "gsm8k", "math": "math"}


class ColumnsConfig(_Strict):
    """Which column of a user's file or HF dataset feeds which Examples field (`loop.sources.ColumnMapping`)."""

    question: str = "question"
    solution: str = Field("solution", description="the reference solution, ending in its final answer")
    answer: str | None = Field(None, description="null = extracted from the solution by the task's grader")
    id: str | None = Field(None, description="null = rows numbered {file stem}-{n:06d} in file order")
    seed_id: str | None = Field(None, description="pool only: the id of the seed the row was derived from")
    seed_question: str | None = Field(
        None, description="pool only: the seed's question text (MetaMathQA: original_question); linked by equality")
    level: str | None = None
    subject: str | None = None


class SplitsConfig(_Strict):
    """Which split of the source feeds each role. Roles naming the same split share its rows: they are
    shuffled once (data.data_seed) and cut in the order test, dev, seed, pool, each role taking its
    `*_limit` rows, the last one the rest. A split is a hub split (`train`), a local file named after it
    (`train.jsonl`, `.ndjson`, `.csv`, `.parquet`, or Parquet shards `train-*.parquet`) or, for
    source `file`, a file name (`mine.csv`)."""

    seed: str = "train"
    pool: str | None = Field(None, description="null = the pool comes from data.pool (a second source)")
    dev: str | None = Field(None, description="threshold calibration split; null = none")
    test: str = "test"

    @field_validator("seed", "pool", "dev", "test")
    @classmethod
    def _not_blank(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"data.splits.{info.field_name} must name a split, got an empty string")
        return value


class PoolSourceConfig(_Strict):
    """A pool from a second source, whose rows may name their seed (seed_id or seed_question columns).

    Rows naming a seed outside the seed set (a sliced one, or another dataset's, as MetaMathQA's MATH rows
    for GSM8K seeds) are dropped and counted; rows naming no seed are linked by `data.link` or left unlinked.
    """

    source: Literal["file", "hf"]
    path: str | None = Field(None, description="file: a JSONL, CSV/TSV or Parquet file")
    name: str | None = Field(None, description="hf: dataset name, e.g. meta-math/MetaMathQA")
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: ColumnsConfig = ColumnsConfig()

    @model_validator(mode="after")
    def _fields_fit_source(self) -> PoolSourceConfig:
        if self.source == "file":
            if not self.path:
                raise ValueError("data.pool.path is required for a pool from a file")
            given = [f for f in ("name", "config", "revision") if getattr(self, f) is not None]
            if given:
                raise ValueError(f"data.pool.{given[0]} applies to source 'hf' only; a file pool reads data.pool.path")
        else:
            if not self.name:
                raise ValueError("data.pool.name (the Hugging Face dataset) is required for a pool from 'hf'")
            if self.path is not None:
                raise ValueError("data.pool.path applies to source 'file' only; an 'hf' pool reads data.pool.name")
        return self


class DataConfig(_Strict):
    """Where examples come from, which split plays which role, and how they are checked before any training.

    source: `embedded` (the synthetic task shipped as code, no download), `gsm8k` (openai/gsm8k, config main),
    `math` (Hendrycks MATH, EleutherAI/hendrycks_math), `file` (a user's JSONL/CSV/Parquet files) or `hf` (any
    Hugging Face dataset). gsm8k and math read the hub (or its cache) unless `path` names a local folder.
    Only the fields of the chosen source may be given (see SOURCE_FIELDS).
    """

    source: DataSource = "embedded"
    # -- embedded ----------------------------------------------------------------------------------
    n_seeds: int = Field(64, gt=0, description="seed problems (the original training set)")
    pool_per_seed: int = Field(8, gt=0, description="pool items generated per seed (linked by seed_id)")
    n_dev: int = Field(64, ge=0, description="dev problems (threshold calibration, never the test set)")
    n_test: int = Field(200, gt=0, description="test problems")
    min_steps: int = Field(2, ge=1)
    max_steps: int = Field(5, ge=1)
    data_seed: int = Field(0, description="seed of the generated data set (embedded) or of the slices (others)")
    per_replicate: bool = Field(
        True, description="each paired replicate (seed) draws its own data from data_seed and its seed: seed set, "
        "pool and test subset (the strategies of one replicate share it), so intervals include the data's own "
        "variance; false = one draw for every replicate")
    # -- where the rows are ------------------------------------------------------------------------
    path: str | None = Field(
        None, description="gsm8k/math: a local folder with the split files (null = the hub); file: a folder of "
                          "split files, or one file that every role is cut from")
    name: str | None = Field(None, description="hf: dataset name (required); math: hub repository")
    config: str | None = Field(None, description="hf: dataset config")
    revision: str | None = Field(None, description="hf: dataset revision (a commit, for reproducible runs)")
    columns: ColumnsConfig = Field(ColumnsConfig(), description="file/hf: source column of each field")
    levels: list[int] | Literal["all"] = Field([1, 2, 3], description="math: levels kept (paper: 1-3)")
    splits: SplitsConfig = SplitsConfig()
    pool: PoolSourceConfig | None = Field(None, description="a pool from a second file or HF dataset")
    link: Literal["none", "tfidf", "lsa"] = Field(
        "none", description="link pool items naming no seed to their nearest seed question (scikit-learn); "
                            "the cosine is kept as link_similarity")
    # -- slices ------------------------------------------------------------------------------------
    seed_limit: int | None = Field(None, gt=0, description="at most this many seeds (a seeded random slice)")
    pool_limit: int | None = Field(None, gt=0, description="at most this many pool items")
    dev_limit: int | None = Field(None, gt=0, description="at most this many dev problems")
    test_limit: int | None = Field(None, gt=0, description="at most this many test problems")
    # -- checks ------------------------------------------------------------------------------------
    skip_invalid: bool = Field(False, description="skip (and count) invalid rows instead of stopping the run")
    contamination: Literal["refuse", "drop", "allow"] = Field(
        "refuse", description="seed/pool/dev questions equal or near-equal to a test question: refuse the run, "
                              "drop them from seed/pool/dev (recorded), or allow them")
    near_duplicate_threshold: float = Field(0.9, gt=0.0, le=1.0, description="TF-IDF cosine for near duplicates")

    @model_validator(mode="after")
    def _fields_fit_source(self) -> DataConfig:
        used = SOURCE_FIELDS[self.source]
        stray = [f for f in type(self).model_fields if f in self.model_fields_set and f not in used]
        if stray:
            keys = ", ".join(f"data.{f}" for f in stray)
            verb = "does" if len(stray) == 1 else "do"
            raise ValueError(f"{keys} {verb} not apply to data.source {self.source!r}; it reads "
                             f"{', '.join(f for f in used if f != 'source')} (a preset for another source may have "
                             f"set them: start from preset gsm8k, math or default instead)")
        if self.source == "embedded":
            if self.min_steps > self.max_steps:
                raise ValueError(f"data.min_steps ({self.min_steps}) > data.max_steps ({self.max_steps})")
            return self
        if self.source == "file" and not self.path:
            raise ValueError("data.path is required for data.source 'file' (a folder of split files, or one file)")
        if self.source == "hf" and not self.name:
            raise ValueError("data.name (the Hugging Face dataset, e.g. openai/gsm8k) is required for data.source 'hf'")
        if isinstance(self.levels, list):
            bad = [lv for lv in self.levels if not 1 <= lv <= 5]
            if bad or not self.levels:
                raise ValueError(f"data.levels must list MATH levels 1..5 (or be 'all'), got {self.levels}")
        if self.dev_limit is not None and self.splits.dev is None:
            raise ValueError("data.dev_limit is set but data.splits.dev names no split to take the dev rows from")
        if self.pool is not None and self.splits.pool is not None:
            raise ValueError("data.pool and data.splits.pool both give a pool; keep one")
        if self.pool is None and self.splits.pool is None:
            raise ValueError("data gives no pool: set data.splits.pool (cut it from a split, e.g. train) or "
                             "data.pool (a second file or HF dataset)")
        for mapped in ("seed_id", "seed_question"):
            if getattr(self.columns, mapped) is not None:
                raise ValueError(f"data.columns.{mapped} links pool rows to seeds: give it in data.pool.columns, "
                                 "with the pool as its own source")
        return self

    @model_serializer(mode="wrap")
    def _dump_own_fields(self, handler: Any) -> dict[str, Any]:
        used = SOURCE_FIELDS[self.source]
        return {k: v for k, v in handler(self).items() if k in used}

    @property
    def pool_size(self) -> int:
        """Pool items of the embedded task (the other sources know theirs only once loaded)."""
        return self.n_seeds * self.pool_per_seed

    def split_of(self, role: str) -> str | None:
        """The source split feeding `role` (seed | pool | dev | test); None for a pool from data.pool."""
        return getattr(self.splits, role)

    def limit_of(self, role: str) -> int | None:
        return getattr(self, f"{role}_limit")


class LoraSettings(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


WeightDtype = Literal["auto", "float32", "bfloat16", "float16"]


class ModelConfig(_Strict):
    """The base model every round retrains from. `embedded` is the small checkpoint shipped in loop/assets.

    Weights that are trained are always float32 (master weights; the matmuls run in `train.precision`). `dtype`
    sets the storage of the weights that are not trained: the frozen base under LoRA. `auto` = bfloat16 on a GPU
    that has it, float32 elsewhere; full fine-tuning accepts only auto or float32 (AdamW updates at lr 2e-5 fall
    below bfloat16's rounding step and would be lost).
    """

    name_or_path: str = Field("embedded", description="a hub name, a local folder, or a .gguf file (dequantized once)")
    gguf_file: str | None = Field(None, description="a GGUF file inside name_or_path's folder (transformers + gguf)")
    dtype: WeightDtype = "auto"
    attn_implementation: str | None = Field(
        None, description="transformers' attention (sdpa, eager, flash_attention_2, ...); null = the model's default")
    lora: LoraSettings | None = Field(None, description="LoRA through peft; null = full fine-tuning")
    format: Literal["plain", "chat"] = Field("plain", description="plain = the paper's format; chat = the model's chat template")
    trust_remote_code: bool = Field(
        False, description="run the model repository's own Python code (transformers' trust_remote_code): off unless "
        "you trust the repository; weights are read from safetensors (or GGUF) only, never from pickle files")
    train_eos: bool | None = Field(
        None, description="close the target with the EOS token, trained and scored. null = the format's default: "
        "plain -> no (the paper's code trains and scores ' {solution}\\nDone.' with no EOS), chat -> yes (the end of "
        "the assistant turn)")

    @model_validator(mode="after")
    def _no_pure_low_precision_training(self) -> ModelConfig:
        if self.lora is None and self.dtype in ("bfloat16", "float16"):
            raise ValueError(
                f"model.dtype {self.dtype!r} with full fine-tuning would train the weights in pure {self.dtype}: "
                "full fine-tuning keeps float32 master weights and runs its matmuls in train.precision (bf16 "
                "autocast on a GPU). Set model.dtype: auto (or float32); model.dtype applies to the frozen base "
                "under LoRA")
        return self

    @property
    def eos_closes_target(self) -> bool:
        return self.train_eos if self.train_eos is not None else self.format == "chat"


class TrainConfig(_Strict):
    """Fine-tuning of one round (trl SFTTrainer), from the base model each time as in the paper."""

    epochs: int = Field(3, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(16, gt=0, description="examples per forward pass (per device)")
    gradient_accumulation_steps: int = Field(1, gt=0, description="effective batch = batch_size x this")
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(2.0, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    max_length: int = Field(1024, gt=0, description="longest example in tokens; longer ones are found before round 0")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="dtype of the matmuls over float32 master weights (autocast): auto = bf16 on a GPU that "
        "has it (fp16 with loss scaling on one that has not), fp32 on CPU. TF32 matmuls are on for any CUDA run")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="recompute activations in the backward pass: less memory, about a third more compute. "
        "auto = on only where the estimated training memory would not fit the GPU (loop.model.memory)")
    padding_free: bool = Field(
        False, description="one unpadded row per batch (trl padding_free): no compute on padding; fast with "
        "flash attention, correct but quadratic in the batch's tokens with sdpa")
    packing: bool = Field(False, description="pack examples into rows of max_length (trl bfd packing, padding-free)")
    optimizer: Literal["auto", "adamw_torch", "adamw_torch_fused"] = Field(
        "auto", description="auto = fused AdamW on a GPU (same update, one kernel), adamw_torch on CPU")
    batch_order: Literal["random", "group_by_length"] = Field(
        "group_by_length",
        description="group_by_length batches examples of similar length (transformers' LengthGroupedSampler, "
        "still shuffled): less padding, the same data per epoch",
    )

    @model_validator(mode="after")
    def _packing_is_padding_free(self) -> TrainConfig:
        if self.packing and not self.padding_free:
            object.__setattr__(self, "padding_free", True)  # trl's bfd packing runs padding-free
        return self


class SamplingConfig(_Strict):
    """How completions are drawn (for learning dynamics and for test accuracy)."""

    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(512, gt=0)
    batch_size: int = Field(256, gt=0, description="sequences decoded at once (halved and retried on CUDA out of memory)")
    engine: Literal["auto", "decode", "generate", "vllm"] = Field(
        "auto",
        description="auto = vllm on a GPU where a vLLM environment is set up (vllm.python, CURATION_LOOP_VLLM_PYTHON "
        "or vllm.url; measured faster there), else decode (loop.model.backends.resolve_engine logs the choice); "
        "decode = the project's decode loop over the model's forward (batch kept full, CUDA graphs on a GPU); "
        "generate = transformers' generate (the reference; used automatically where decode cannot serve the "
        "model); vllm = a `vllm serve` process (section vllm)",
    )
    kv_cache: Literal["static", "dynamic"] = Field(
        "static", description="generate engine only: static avoids re-allocating the KV cache every decode step"
    )
    cuda_graphs: bool = Field(True, description="decode engine on CUDA: replay each decode step as a CUDA graph")
    unit: int = Field(
        512, gt=0, description="questions per sampling call and examples per teacher-forced scoring call: the work "
        "unit a scoring shard takes (loop.model.shards). Each unit samples under a seed of its own, the first under "
        "the call's, so a call of at most this many items runs as one")


class VLLMConfig(_Strict):
    """The vLLM backend (sampling.engine: vllm): vLLM's OpenAI-compatible server in its own environment, over HTTP.

    vLLM and Prefect pin incompatible fastapi versions, so vLLM lives in a separate virtual environment; the loop
    starts the server (`python -m vllm.entrypoints.openai.api_server`), waits for /health, keeps its log in the run
    store and stops it, or connects to `url`. LoRA runs load each checkpoint's adapter under a new name; full
    fine-tuning serves each checkpoint's weights by reloading them into the running server (`weight_update`).
    """

    url: str | None = Field(None, description="an already running server (http://host:port); null = start one")
    python: str | None = Field(
        None, description="the Python of the vLLM environment (e.g. .venv-vllm/bin/python); null = the environment "
        "variable CURATION_LOOP_VLLM_PYTHON")
    port: int = Field(0, ge=0, description="port of a started server; 0 = a free one")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_model_len: int | None = Field(
        None, gt=0, description="null = train.max_length + sampling.max_new_tokens, within the model's context")
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0, description="share of the card vLLM may take")
    max_lora_rank: int = Field(64, gt=0)
    seeds: Literal["per_request", "server"] = Field(
        "per_request", description="per_request = each prompt's own seed, derived from the run's (reproducible per "
        "prompt); server = the engine's one seed only")
    concurrency: int = Field(64, gt=0, description="requests in flight at once")
    startup_timeout_s: float = Field(900.0, gt=0)
    max_restarts: int = Field(
        2, ge=0, description="times a started server that dies (or stops answering) is restarted on the weights and "
        "adapters it served before the step fails; the requests it dropped are sent again, each with its own seed")
    extra_args: list[str] = Field(default_factory=list, description="more server flags, passed as given "
                                  "(e.g. --enforce-eager)")
    weight_update: Literal["auto", "reload", "restart"] = Field(
        "auto", description="how full fine-tuning's new weights reach the server: reload = in place through vLLM's "
        "reload_weights (its dev endpoints, VLLM_SERVER_DEV_MODE), no restart; restart = a new server on them; auto = "
        "reload on a GPU (a restart there costs a CUDA-graph capture), restart elsewhere. A reload the server refuses "
        "falls back to a restart, logged")


class TauGrid(_Strict):
    """Candidate thresholds low, low + step, ..., high for calibration."""

    low: float
    high: float
    step: float = Field(0.05, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TauGrid:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high < self.low:
            raise ValueError(f"dynamics.tau_grid needs finite low <= high, got {self.low}, {self.high}")
        return self


class DynamicsConfig(_Strict):
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
    nll_batch_size: int = Field(64, gt=0, description="most sequences per teacher-forced NLL pass (64 is fastest on CPU)")
    nll_batch_tokens: int | None = Field(
        None, gt=0, description="most tokens (padding included) per NLL pass; null = 16k on CPU, 64k on a GPU")
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


class EvalConfig(_Strict):
    n_samples: int = Field(4, gt=0, description="samples per test question; accuracy = mean over all samples")


class StrategyConfig(_Strict):
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


class SelectionConfig(_Strict):
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


class SweepRunConfig(_Strict):
    """One training configuration of the generalization-prediction sweep: a separate run from the base model."""

    learning_rate: float | None = Field(None, gt=0, description="null = train.learning_rate")
    epochs: int | None = Field(None, gt=0, description="null = train.epochs")
    fraction: float = Field(1.0, gt=0, le=1, description="share of the seed set trained (a seeded random subset)")


class RobustnessConfig(_Strict):
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


class AnalysisConfig(_Strict):
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


class ScoringShardsConfig(_Strict):
    """Where a step's sampling and teacher-forced scoring run (`loop.model.shards`): in the step's process, or cut
    into shards of whole work units that a Prefect task runner spreads over a Ray or Dask cluster. How to run, not
    what: every unit computes the same wherever it runs, so the results do not depend on these settings."""

    runner: Literal["none", "ray", "dask"] = Field(
        "none", description="none = in the step's process; ray = Prefect's RayTaskRunner (prefect-ray); dask = "
        "Prefect's DaskTaskRunner (prefect-dask)")
    address: str | None = Field(
        None, description="the cluster: ray = a Ray address (ray start --head prints it), dask = a scheduler "
        "address (tcp://host:8786); null = a local cluster of `shards` worker processes, started once per process")
    shards: int = Field(2, gt=0, description="tasks each sampling or scoring call is cut into (whole units each)")
    gpus_per_shard: float | Literal["auto"] = Field(
        "auto", description="ray: GPUs each shard task asks for; auto = 1 where the cluster has GPUs, else 0")
    retries: int = Field(2, ge=0, description="times a failed shard is run again (alone) before the step fails")
    checkpoint_dir: str | None = Field(
        None, description="where a bound checkpoint is saved for the shards to load: a folder every worker reads "
        "(a shared file system on a multi-machine cluster); null = the run store's backend/shards folder")


class ScaleConfig(_Strict):
    """How a comparison spreads over processes and machines (flows/curation.py): how to run, not what is run, so not
    part of the stored config (a run may resume in another mode).

    - `runs: steps`: this flow run runs every step as a task, `workers` at a time (Prefect's process pool).
    - `runs: deployments`: every (replicate, strategy) chain of rounds is a flow run of the deployment `chain_deployment`
      (`curation-chain/...`), which a work pool's workers take, on this machine or others sharing the run store;
      round 0 of each replicate runs once, before the chains that read it. The comparison flow waits for them all
      and writes the report from the stored tables.
    """

    runs: Literal["steps", "deployments"] = "steps"
    chain_deployment: str = Field("curation-chain/default", description="flow/deployment name each chain runs as")
    gpu_limit: str | None = Field(
        None, description="a Prefect global concurrency limit every step holds one slot of while it runs: create it "
        "with as many slots as GPUs (prefect gcl create gpus --limit 8) so that no two steps share a card; it "
        "must exist")
    poll_s: float = Field(5.0, gt=0, description="how often the comparison flow checks on its chains' flow runs")
    cache_dir: str | None = Field(
        None, description="with out_dir an fsspec URL (s3://bucket/runs/x): the local working copy of the run store; "
        "null = ~/.cache/curation-loop/stores/HASH (CURATION_LOOP_CACHE replaces ~/.cache/curation-loop)")
    scoring: ScoringShardsConfig = Field(
        ScoringShardsConfig(), description="sharded sampling and scoring of each step's checkpoints on a Ray or "
        "Dask cluster")


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
    save_models: bool = Field(False, description="keep each round's model/adapter in the run store")
    keep_models: Literal["all", "last_and_best"] = Field(
        "all", description="with save_models: all = every round's model; last_and_best = per (replicate, strategy) "
        "only the latest round's and the best test accuracy's (the others' model/ folders are removed as each "
        "round commits; their tables stay)")
    allow_resume_changes: bool = Field(
        False, description="resume a run store although library versions, base weights or data differ from its "
        "first start (the differences are recorded in the run's manifest); by default such a resume stops and says what "
        "changed. Not part of the run's stored config")

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
        # Other sources know their pool size only once loaded: loop.data.check_examples checks it there.
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


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The override dict stored in loop/presets/NAME.yaml. A preset may name another (`preset: default-gpu`): that
    one's values apply first, then its own, so a variant states only what it changes."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ValueError(f"preset {name!r} not found in {PRESET_DIR}; known presets: {known}")
    if name in _seen:
        raise ValueError(f"{path}: presets name each other in a cycle: {' -> '.join((*_seen, name))}")
    loaded = _read_yaml(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a preset must be a mapping of config keys")
    parent = loaded.pop("preset", None)
    return deep_merge(load_preset(parent, (*_seen, name)), loaded) if parent else loaded


def _read_yaml(path: Path) -> Any:
    """A YAML file's content ({} when empty); a syntax error names the file, line and column."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start})") from None


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
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"override {text!r}: the value is not YAML ({str(err).splitlines()[0]})") from None
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
        loaded = _read_yaml(path)
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
