"""The train section: one round's fine-tuning (trl SFTTrainer), from the base each time as in the paper."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from loop.config.base import Strict


class TrainConfig(Strict):
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
    token_metrics: bool | Literal["auto"] = Field(
        "auto", description="trl's per-step entropy and token accuracy, read back from the GPU every step (a host "
        "wait each): auto = on only where experiment trackers are on (tracking.report_to), the metrics' one reader")
    kernels: Literal["auto", "torch", "liger"] = Field(
        "auto", description="liger = Liger's Triton RMSNorm and SwiGLU on the trained model (CUDA, package "
        "liger-kernel); auto = the choice measured fastest on a GPU (loop.model.training_levers.GPU_DEFAULTS), "
        "the model's own kernels on a CPU")
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile each decoder layer (dynamic sequence length): fewer launches per step, "
        "about 27 s of compiling once per process; auto = the measured choice for the device: off (on an H100 a "
        "0.5B step ran 1.53x faster compiled, which repays the compile only past about 3.8M trained tokens)")
    cuda_graphs: bool = Field(
        False, description="replay each compiled decoder layer's forward and backward as CUDA graphs (torch.compile "
        "mode reduce-overhead): one launch per layer and pass where the compiled step still launches dozens. Needs "
        "train.compile true; pads batches to train.length_bucket (32 where unset) so that a few shapes are recorded. "
        "Off: not yet measured on a card (loop.model.training_levers)")
    length_bucket: int | None = Field(
        None, gt=0, description="pad each batch's length up to a multiple of this many tokens (label -100: the same "
        "loss and gradients), so that compiled or graphed layers see a few shapes; unset = pad to the longest row")
    async_step: bool | Literal["auto"] = Field(
        "auto", description="queue the step's work without waiting on the GPU: batches copied from pinned memory "
        "without a wait, a right-padded batch's attention mask left to the kernel's causal mask (the same outputs at "
        "every real token), and the trainer's NaN filter of the logged loss (a read-back per micro-batch) off. Needs "
        "train.token_metrics off; auto = on a GPU wherever token metrics are off (1.19x the lean step on an H100), "
        "off on a CPU")
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

    @model_validator(mode="after")
    def _cuda_graphs_replay_compiled_layers(self) -> TrainConfig:
        if self.cuda_graphs and self.compile is not True:
            raise ValueError(f"train.cuda_graphs replays the layers train.compile compiles: set train.compile=true "
                             f"(it is {self.compile!r})")
        if self.cuda_graphs and self.length_bucket is None:
            # One recorded shape per 32 tokens of length: about 16 tokens of padding a row, 7% of a 215-token row.
            object.__setattr__(self, "length_bucket", 32)
        return self
