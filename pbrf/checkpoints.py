"""TracIn's checkpoints of base training: where they are taken and what each one stands for.

Base training runs K epochs. With C checkpoints the epochs are split into C near-equal chunks
starting at ``e_k = ⌊k·K/C⌋`` (k = 0..C−1), and checkpoint k is θ at the start of chunk k. It
stands for the ``visits_k = e_{k+1} − e_k`` epochs of its chunk (each training example's
gradient is applied once per epoch) at the chunk's mean learning rate, so that
``lr_k · visits_k = Σ_{e ∈ chunk k} η_e`` — the factor TracIn multiplies each checkpoint's
gradient product by (:mod:`pbrf.estimators.tracin`). With heavy-ball momentum μ one removed
gradient moves the iterates by ``η/(1 − μ)`` in total (to first order), so the effective step
``η_e/(1 − μ)`` is recorded — the same convention as the PBRF horizon ``η·S/(1 − μ)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from pbrf.estimators.base import Checkpoint


def checkpoint_epochs(epochs: int, count: int) -> tuple[int, ...]:
    """The epochs (completed before the chunk, 0 = θ⁰) at which checkpoints are taken."""
    if epochs < 1 or count < 0:
        raise ValueError(f"need epochs ≥ 1 and count ≥ 0, got {epochs} and {count}")
    count = min(count, epochs)
    return tuple((k * epochs) // count for k in range(count))


def tracin_checkpoints(
    snapshots: Mapping[int, Tensor], epochs: int, step_at: Callable[[int], float]
) -> tuple[Checkpoint, ...]:
    """Checkpoints from ``{start epoch: θ (d,)}``; ``step_at(e)`` is the effective step of epoch e."""
    starts = sorted(snapshots)
    if not starts:
        return ()
    ends = [*starts[1:], epochs]
    out = []
    for start, end in zip(starts, ends, strict=True):
        visits = end - start
        lr = sum(step_at(e) for e in range(start, end)) / visits
        out.append(Checkpoint(snapshots[start], lr=lr, visits=float(visits)))
    return tuple(out)
