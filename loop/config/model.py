"""The model section: the base checkpoint, its format and storage, LoRA."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from loop.config.base import Strict


class LoraSettings(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


WeightDtype = Literal["auto", "float32", "bfloat16", "float16"]


class ModelConfig(Strict):
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
    format: Literal["plain", "chat"] = Field(
        "plain", description="plain = the paper's format; chat = the model's chat template")
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
