"""`base_perplexity`: each pool item's perplexity under the base model (a classic uncertainty signal)."""

import numpy as np
import polars as pl

from loop.model.formatting import Encoded, encode_for
from loop.signals.registry import SignalContext, signal


@signal("base_perplexity", scope="base", level="item")
def base_perplexity(ctx: SignalContext) -> pl.DataFrame:
    """Perplexity of each pool item's whole text (after its first token) under the base model."""
    whole = [Encoded(e.input_ids, 1) for e in encode_for(ctx.cfg.model, ctx.tokenizer, ctx.rows)]
    return pl.DataFrame({"id": ctx.rows["id"], "base_perplexity": np.exp(ctx.bound.scorer.mean_nll(whole))})
