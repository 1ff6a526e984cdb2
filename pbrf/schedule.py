"""Batch orders: which examples each step sees (Appendix E.2).

Epoch ``e`` of a run with seed ``s`` visits the permutation drawn from a generator seeded by
``(s, e)``, so epoch e's order does not depend on how many epochs came before. The base run uses
epochs ``0..K−1``; cold-start retraining replays exactly those and continues with epochs
``K..K+K/2−1``; the warm-start variants train on epochs ``K..K+K/2−1`` as well, so every variant
sees the same continuation batches.
"""

from __future__ import annotations

import torch
from torch import Tensor


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The permutation of ``range(n)`` visited in ``epoch`` (int64, CPU)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def epoch_orders(n: int, seed: int, epochs: range) -> Tensor:
    """Stack of :func:`epoch_order` for the given epochs, shape ``(len(epochs), n)``."""
    return (
        torch.stack([epoch_order(n, seed, e) for e in epochs])
        if len(epochs)
        else torch.empty(0, n, dtype=torch.long)
    )


def batches_of(order: Tensor, batch_size: int | None) -> list[Tensor]:
    """Split one epoch's order into index batches; ``None`` means one full batch."""
    if batch_size is None or batch_size >= order.numel():
        return [order]
    return list(order.split(batch_size))
