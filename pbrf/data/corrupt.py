"""Label corruption for the mislabelled-example study (Appendix F.3, Figure 6)."""

from __future__ import annotations

import torch
from torch import Tensor


def corrupt_labels(
    t: Tensor, num_classes: int, fraction: float, seed: int
) -> tuple[Tensor, Tensor]:
    """``(t_corrupted, corrupted)``: ``round(fraction·N)`` rows chosen without replacement get a
    label drawn uniformly from the other ``C − 1`` classes; ``corrupted`` is the ``(N,)`` mask.

    Multiclass labels are ``(N,)`` integers in ``0..C−1``; binary targets ``(N, 1)`` floats in
    {0, 1} are flipped. Both draws come from one generator seeded with ``seed``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if num_classes < 2:
        raise ValueError(f"label corruption needs at least 2 classes, got {num_classes}")
    n = t.shape[0]
    count = round(fraction * n)
    if not 0 < count < n:
        raise ValueError(f"fraction {fraction} of {n} examples corrupts {count}; need 1..N−1")
    gen = torch.Generator().manual_seed(int(seed))
    rows = torch.randperm(n, generator=gen)[:count]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[rows] = True
    out = t.clone()
    if t.is_floating_point():  # binary {0, 1} targets
        out[rows] = 1.0 - out[rows]
    else:
        shift = torch.randint(1, num_classes, (count,), generator=gen)
        out[rows] = (t[rows].cpu() + shift).remainder(num_classes).to(t.device, t.dtype)
    return out, mask.to(t.device)
