"""Offline character tokenizer for the embedded task: one token per character.

Built with the `tokenizers` library, so no file or network access is needed, and wrapped as a
`transformers.PreTrainedTokenizerFast` so the rest of the loop treats it like any Hub tokenizer.
The alphabet is printable ASCII plus newline: a superset of what `loop.embedded.task` emits, fixed
so ids never depend on which problems happened to be generated. Encoding prepends [BOS] (a
TemplateProcessing post-processor), as real causal LMs' tokenizers do; [EOS] is the end of a
target and is appended by the training code, not by the tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
# string.printable minus the tab and the rare vertical/form-feed/carriage-return whitespace.
ALPHABET = "\n" + "".join(c for c in string.printable if c not in "\t\r\x0b\x0c\n")


def char_vocab() -> dict[str, int]:
    """Token -> id: the four special tokens first (PAD = 0), then the alphabet in a fixed order."""
    return {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *ALPHABET))}


def build_char_tokenizer(padding_side: str = "left") -> PreTrainedTokenizerFast:
    """A char-level tokenizer: every character of ALPHABET is one token, others map to [UNK].

    `padding_side` is "left" for batched generation and "right" for teacher-forced scoring.
    Save it next to a model with `save_pretrained(dir)`; `AutoTokenizer.from_pretrained(dir)`
    then loads it offline.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    vocab = char_vocab()
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Each character is its own pre-token ("[\s\S]" also matches the newline, "." would not).
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()  # join characters back without separators
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )
