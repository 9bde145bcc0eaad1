"""The one prompt/target format used for training, memorization perplexity and sampling.

Paper format (Kang et al. 2024): prompt `{question}\\nAnswer:`, target ` {solution}\\nDone.`, loss on the
target only. The paper's code tokenizes prompt + target with the tokenizer's own special tokens (BOS for
Llama-3) and appends no EOS: the model learns to end with `\\nDone.`, where sampling stops. `eos=True` closes
the target with the EOS token as well (trained and scored); `chat` wraps the question in the model's chat
template instead (instruct models), its target closed by EOS, the end of the assistant turn. Every stage
encodes through `encode_example` / `encode_prompt`, so what is scored is exactly what was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROMPT_TEMPLATE = "{question}\nAnswer:"
TARGET_TEMPLATE = " {solution}\nDone."
STOP_TEXT = "\nDone."

FormatName = Literal["plain", "chat"]


def prompt_text(question: str, tokenizer=None, fmt: FormatName = "plain") -> str:
    if fmt == "plain":
        return PROMPT_TEMPLATE.format(question=question)
    if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("model.format 'chat' needs a tokenizer with a chat template")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def target_text(solution: str, fmt: FormatName = "plain") -> str:
    return TARGET_TEMPLATE.format(solution=solution) if fmt == "plain" else solution


@dataclass(frozen=True)
class Encoded:
    """Token ids of prompt + target (+ EOS); `n_prompt` leading ids are context, the rest is the target."""

    input_ids: list[int]
    n_prompt: int

    @property
    def completion_mask(self) -> list[int]:
        return [0] * self.n_prompt + [1] * (len(self.input_ids) - self.n_prompt)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_prompt(tokenizer, question: str, fmt: FormatName = "plain", answer_prefix: str = "") -> list[int]:
    """Token ids of the prompt; `answer_prefix` forces the answer to begin with it (the robustness analysis:
    `...\nAnswer: First`), as the paper's perturbed prompts do. Without one, exactly the training prompt."""
    text = prompt_text(question, tokenizer, fmt)
    if answer_prefix:
        text += (" " if fmt == "plain" else "") + answer_prefix
    # A chat template already holds its special tokens; the plain format gets the tokenizer's own (BOS).
    return tokenizer(text, add_special_tokens=(fmt == "plain"))["input_ids"]


def encode_example(tokenizer, question: str, solution: str, fmt: FormatName = "plain", *,
                   eos: bool | None = None) -> Encoded:
    """Prompt and target tokenized together, the boundary where they diverge (as trl's SFTTrainer does).

    Tokenizing the joint text keeps merges across the boundary identical to training. `eos` (default: the
    format's own, no for plain and yes for chat) appends the EOS token to the target; a tokenizer that adds EOS
    by itself keeps it only when `eos` asks for it, as the paper's preprocessing does.
    """
    eos = (fmt == "chat") if eos is None else eos
    prompt_ids = encode_prompt(tokenizer, question, fmt)
    full = prompt_text(question, tokenizer, fmt) + target_text(solution, fmt)
    full_ids = list(tokenizer(full, add_special_tokens=(fmt == "plain"))["input_ids"])
    eos_id = tokenizer.eos_token_id
    if eos_id is not None:
        ends_with_eos = bool(full_ids) and full_ids[-1] == eos_id
        if eos and not ends_with_eos:
            full_ids.append(eos_id)
        elif not eos and ends_with_eos and fmt == "plain":
            full_ids.pop()
    n_prompt = _common_prefix(prompt_ids, full_ids)
    if n_prompt >= len(full_ids):
        raise ValueError(f"empty target after tokenization for question {question[:60]!r}")
    return Encoded(full_ids, n_prompt)


def encode_examples(tokenizer, examples, fmt: FormatName = "plain", *, eos: bool | None = None) -> list[Encoded]:
    """`encode_example` for every row of a frame with `question` and `solution` columns, in row order."""
    return [encode_example(tokenizer, q, s, fmt, eos=eos) for q, s in zip(examples["question"], examples["solution"])]


def encode_for(model_cfg, tokenizer, examples) -> list[Encoded]:
    """`encode_examples` in a run's format (`model.format`, `model.train_eos`): what training, scoring and
    validation all read."""
    return encode_examples(tokenizer, examples, model_cfg.format, eos=model_cfg.eos_closes_target)
