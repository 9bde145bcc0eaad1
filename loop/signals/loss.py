"""`loss`: each pool item's target NLL under the round's fine-tuned model, in the training format."""

import polars as pl

from loop.model.formatting import encode_for
from loop.signals.registry import SignalContext, signal


@signal("loss", scope="round", level="item")
def loss(ctx: SignalContext) -> pl.DataFrame:
    """Mean target NLL of each pool item under the round's model (what the `loss` strategy ranks by)."""
    nll = ctx.bound.scorer.mean_nll(encode_for(ctx.cfg.model, ctx.tokenizer, ctx.rows))
    return pl.DataFrame({"id": ctx.rows["id"], "loss": nll})
