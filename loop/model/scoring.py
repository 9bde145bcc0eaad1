"""Teacher-forced negative log-likelihood per example, batched, in the training format.

`mean_nll` scores the tokens from position `score_from` to the end of each sequence; with `score_from`
= the prompt length it is the mean target NLL (= log PPL of the target, the memorization quantity); with
`score_from` = 1 it is the NLL of the whole text after BOS (reference-model perplexity).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def mean_nll(
    model, sequences: list[list[int]], score_from: list[int], *, pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Mean NLL (nats per token) over tokens [score_from[i], len) of each sequence, in input order."""
    if len(sequences) != len(score_from):
        raise ValueError("one score_from per sequence is needed")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(sequences))
    order = np.argsort([len(s) for s in sequences], kind="stable")  # similar lengths share a batch: less padding
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        scored = torch.zeros((len(idx), width), dtype=torch.bool)
        for row, i in enumerate(idx):
            seq = sequences[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            scored[row, max(score_from[i], 1) : len(seq)] = True
        ids, mask, scored = ids.to(device), mask.to(device), scored.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        token_nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        weights = scored[:, 1:].float()
        per_seq = (token_nll * weights).sum(1) / weights.sum(1).clamp(min=1)
        out[idx] = per_seq.cpu().numpy()
    if was_training:
        model.train()
    return out
