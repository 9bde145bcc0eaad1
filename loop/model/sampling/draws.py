"""Token draws: temperature, top-p, and random numbers that belong to a completion, not to a batch.

Each completion (a job: one question, one copy) owns a stream of uniform numbers, the k-th being a hash of
(seed, job, k). So a completion is the same whatever else shares its batch, whatever the batch size (halved after
an out-of-memory error, say) and whenever it was admitted into the batch; and the draws need no generator state,
so they can be computed inside a CUDA graph. The hash is a 32-bit integer mixer (the `lowbias32` constants of
C. Wellons' hash prospector) evaluated in int64 arithmetic that never overflows.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor | int, m: int):
    """(x * m) mod 2**32 for 0 <= x < 2**32, exact in int64: m is split in 16-bit halves so no product overflows."""
    lo, hi = m & 0xFFFF, m >> 16
    return (x * lo + ((x * hi) & 0xFFFF) * 65536) & _MASK32


def mix32(x):
    """A bijective 32-bit mixer (int or int64 tensor of values in [0, 2**32))."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def seed_key(seed: int) -> int:
    """A 32-bit key for a seed of any size."""
    seed = int(seed)
    return mix32(mix32(seed & _MASK32) ^ ((seed >> 32) & _MASK32))


def uniforms(key: torch.Tensor | int, jobs: torch.Tensor, steps: torch.Tensor, rounds: int = 1) -> torch.Tensor:
    """The uniform numbers in (0, 1) of each (job, step), float32, under a `seed_key`: [n] for one round, else
    [n, rounds] (independent numbers for the rounds of a rejection draw)."""
    counter = (steps & _MASK32)[:, None] * rounds + torch.arange(rounds, device=steps.device)
    h = mix32(mix32((jobs & _MASK32)[:, None] ^ key) ^ (counter & _MASK32))
    out = ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    return out[:, 0] if rounds == 1 else out


REJECTION_ROUNDS = 4
NUCLEUS = "rejection"  # how `pick` draws from the nucleus: "rejection" (no sort) or "sort" (the reference)


def pick(logits: torch.Tensor, u: torch.Tensor | None, temperature: float, top_p: float) -> torch.Tensor:
    """The next token of each row of float32 `logits` [rows, vocab]: argmax at temperature 0; else a draw from
    softmax(logits / T) restricted to the top-p nucleus, driven by the row's uniforms `u` ([rows] or
    [rows, rounds]). The nucleus follows transformers' TopPLogitsWarper: the least likely tokens whose total mass
    is <= 1 - top_p are dropped, the most likely one always kept."""
    if temperature == 0.0:
        return logits.argmax(-1)
    if NUCLEUS == "sort" or top_p >= 1.0:
        return pick_sorted(logits, u if u.dim() == 1 else u[:, 0], temperature, top_p)
    return pick_by_rejection(logits, u, temperature, top_p)


def pick_sorted(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The nucleus draw by sorting the vocabulary: the token at `u` on the cumulative distribution of the sorted,
    truncated probabilities."""
    ordered, order = torch.sort(logits / temperature, dim=-1)  # ascending
    probs = ordered.softmax(-1)
    if top_p < 1.0:
        keep = probs.cumsum(-1) > 1 - top_p
        keep[:, -1] = True
        probs = probs * keep
    cdf = probs.cumsum(-1)
    drawn = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)
    # Rounding can put the draw past the last token of positive mass: take the last one (the most likely token).
    drawn = drawn.clamp(max=logits.shape[-1] - 1)
    return order.gather(1, drawn)[:, 0]


def pick_by_rejection(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The nucleus draw without sorting a 150k vocabulary: draw from the whole softmax (inverse CDF in vocabulary
    order) and keep the first of `rounds` draws that lies in the nucleus; token x lies there iff the mass of the
    tokens more likely than x is < top_p. Accepted draws follow the nucleus distribution exactly (rejection
    sampling); a round is accepted with probability >= top_p, so with 4 rounds and top_p 0.95 all are rejected with
    probability <= 0.05^4 = 6e-6, and the row then takes its most likely token (always in the nucleus)."""
    probs = (logits / temperature).softmax(-1)
    cdf = probs.cumsum(-1)
    rounds = u if u.dim() == 2 else u[:, None]
    drawn = torch.searchsorted(cdf, rounds * cdf[:, -1:], right=True).clamp(max=logits.shape[-1] - 1)
    p_drawn = probs.gather(1, drawn)  # [rows, rounds]
    accepted = torch.stack([(probs * (probs > p_drawn[:, k : k + 1])).sum(-1) < top_p
                            for k in range(rounds.shape[1])], dim=1)
    first = accepted.to(torch.int8).argmax(1, keepdim=True)  # the first accepted round (0 if none)
    token = drawn.gather(1, first)[:, 0]
    return torch.where(accepted.any(1), token, probs.argmax(-1))
