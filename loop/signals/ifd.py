"""`ifd`: Instruction-Following Difficulty (Li et al. 2023; the paper's IFD baseline, Kang et al. 2024 section 5.3).

    IFD(i) = log PPL(answer | question) / log PPL(answer) = mean NLL(target | prompt) / mean NLL(target alone)

scored per seed by the base model, which never trained on the seeds (the paper used a model fine-tuned on a disjoint
split: neither is touched by memorization of the seeds). High IFD: the question helps little to predict the answer.
"""

import numpy as np
import polars as pl

from loop.model.formatting import Encoded, encode_for
from loop.signals.registry import SignalContext, signal


@signal("ifd", scope="base", level="seed")
def ifd(ctx: SignalContext) -> pl.DataFrame:
    """Instruction-Following Difficulty of each seed under the base model: NLL(answer | question) / NLL(answer)."""
    tokenizer = ctx.tokenizer
    conditioned = encode_for(ctx.cfg.model, tokenizer, ctx.rows)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    # The answer alone: the same target ids after the BOS token (or the first target token without one).
    alone = [Encoded(bos + e.input_ids[e.n_prompt:], len(bos) if bos else 1) for e in conditioned]
    given = np.asarray(ctx.bound.scorer.mean_nll(conditioned), dtype=float)
    unconditioned = np.asarray(ctx.bound.scorer.mean_nll(alone), dtype=float)
    return pl.DataFrame({"seed_id": ctx.rows["id"], "ifd": given / np.maximum(unconditioned, 1e-9)})
