"""`loss_by_epoch`: each pool item's target NLL under the model at every epoch checkpoint of the round.

The paper's curation compares premem with selection signals read at the end of training, where almost every
example's NLL is near 0 (memorized); a loss read at the first checkpoint is read before memorization.
"""

import polars as pl

from loop.model.formatting import encode_for
from loop.signals.registry import SignalContext, signal


@signal("loss_by_epoch", scope="checkpoint", level="item")
def loss_by_epoch(ctx: SignalContext) -> pl.DataFrame:
    """Mean target NLL of each pool item under the checkpoint's model (a list over the round's checkpoints)."""
    nll = ctx.bound.scorer.mean_nll(encode_for(ctx.cfg.model, ctx.tokenizer, ctx.rows))
    return pl.DataFrame({"id": ctx.rows["id"], "loss_by_epoch": nll})
