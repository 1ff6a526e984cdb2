"""Is a model still training? The share of an objective's decrease that came at the end.

A retrained optimum that is still descending is not an optimum: its distance to another
"optimum" then measures training time as much as the question asked. For a history of per-epoch
objective means h[0..E−1], the tail share is

    share = (h[k] − h[E−1]) / (h[0] − h[E−1]),   k = E − 1 − s,   s = max(1, ⌈tail · (E − 1)⌉),

the part of the total decrease made in the last ``s`` of the E − 1 epoch-to-epoch steps. A
converged run has share ≈ 0; a still-linear descent has share ≈ ``tail``; exponential decay
h = c + A e^{−rt} has share (e^{−rk} − e^{−r(E−1)}) / (1 − e^{−r(E−1)}).

The tail is counted in steps between epochs, not as the index ⌊(1 − tail)E⌋: that index leaves
``tail · E − 1`` steps (none at all for a 10-epoch run with tail 0.1) and would call every short
run converged.

Special cases, per model (documented outcomes, not errors):

- a non-finite value anywhere in the history → NaN (a diverged or broken run);
- a constant history (every value equal) → 0.0 (nothing left to decrease);
- no net decrease (h[E−1] ≥ h[0], not constant) → NaN (the share is undefined);
- otherwise the raw ratio, which may be negative (the tail went up: noise or over-fitting) or
  above 1 (the objective rose, then fell below its start within the tail).

A history with fewer than 2 epochs raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]

#: Default share of the decrease allowed in the tail before a run counts as still training.
STILL_DECREASING_THRESHOLD = 0.05

STILL_DECREASING_MESSAGE = (
    "{label}: {share:.1%} of the objective's decrease over {epochs} epochs came in the last "
    "{tail_epochs} of its {steps} epoch-to-epoch steps, above the {threshold:.0%} threshold: still training — "
    "train longer before reading gaps measured at this point"
)
CONVERGED_MESSAGE = (
    "{label}: {share:.1%} of the objective's decrease over {epochs} epochs came in the last "
    "{tail_epochs} of its {steps} epoch-to-epoch steps, within the {threshold:.0%} threshold"
)
UNDEFINED_MESSAGE = (
    "{label}: no tail share over {epochs} epochs — the history is non-finite or has no net decrease"
)

__all__ = [
    "CONVERGED_MESSAGE",
    "STILL_DECREASING_MESSAGE",
    "STILL_DECREASING_THRESHOLD",
    "UNDEFINED_MESSAGE",
    "convergence_messages",
    "still_decreasing",
    "tail_decrease",
    "tail_steps",
]


def _history(history: ArrayLike) -> Tensor:
    if isinstance(history, Tensor):
        h = history.detach().to(device="cpu", dtype=torch.float64)
    else:
        h = torch.as_tensor(np.asarray(history, dtype=np.float64))
    if h.dim() not in (1, 2):
        raise ValueError(f"history must be (E,) or (E, M), got shape {tuple(h.shape)}")
    if h.shape[0] < 2:
        raise ValueError(f"need at least 2 epochs of history, got {h.shape[0]}")
    return h


def tail_steps(epochs: int, tail: float = 0.1) -> int:
    """Epoch-to-epoch steps in the tail: max(1, ⌈tail · (E − 1)⌉)."""
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    if epochs < 2:
        raise ValueError(f"need at least 2 epochs, got {epochs}")
    # the small offset keeps 0.1 · 30 = 3.0000000000000004 from rounding up to 4
    return max(1, math.ceil(tail * (epochs - 1) - 1e-9))


def tail_decrease(history: ArrayLike, tail: float = 0.1) -> Tensor:
    """Share of the total decrease made in the last ``tail`` of the epochs, per model.

    ``history`` is ``(E,)`` or ``(E, M)`` per-epoch means, first to last. Returns float64 of
    shape ``()`` or ``(M,)``. See the module docstring for the formula and special cases.
    """
    h = _history(history)
    e = h.shape[0]
    k = e - 1 - tail_steps(e, tail)
    first, start, last = h[0], h[k], h[-1]
    total = first - last
    share = (start - last) / total
    finite = torch.isfinite(h).all(dim=0)
    constant = (h == h[0]).all(dim=0)
    nan = torch.full_like(share, math.nan)
    share = torch.where(total > 0, share, nan)
    share = torch.where(constant, torch.zeros_like(share), share)
    return torch.where(finite, share, nan)


def still_decreasing(
    history: ArrayLike, tail: float = 0.1, threshold: float = STILL_DECREASING_THRESHOLD
) -> Tensor:
    """Per model, whether more than ``threshold`` of the decrease came in the tail (bool).

    Undefined shares (non-finite history, no net decrease) give False; check
    :func:`tail_decrease` for NaN, or use :func:`convergence_messages`, to tell them apart.
    """
    return tail_decrease(history, tail) > threshold


def convergence_messages(
    history: ArrayLike,
    tail: float = 0.1,
    threshold: float = STILL_DECREASING_THRESHOLD,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """One human-readable line per model with the numbers (templates above)."""
    share = tail_decrease(history, tail).reshape(-1)
    epochs = _history(history).shape[0]
    if labels is None:
        labels = [f"model {i}" for i in range(share.numel())]
    if len(labels) != share.numel():
        raise ValueError(f"{len(labels)} labels for {share.numel()} models")
    out = []
    for label, s in zip(labels, share.tolist(), strict=True):
        template = (
            UNDEFINED_MESSAGE
            if math.isnan(s)
            else STILL_DECREASING_MESSAGE
            if s > threshold
            else CONVERGED_MESSAGE
        )
        out.append(
            template.format(
                label=label,
                share=s,
                epochs=epochs,
                tail_epochs=tail_steps(epochs, tail),
                steps=epochs - 1,
                threshold=threshold,
            )
        )
    return out
