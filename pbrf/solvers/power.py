"""Power iteration for the largest eigenvalue of a symmetric operator.

LiSSA's scale must satisfy ``σ > λ_max + λ`` or Eq. 51 diverges; a few power iterations
estimate ``λ_max`` cheaply. For a PSD operator (the GNH) the estimate approaches ``λ_max`` from
below; for an indefinite one (the Hessian) it finds the eigenvalue of largest magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pbrf.curvature import Matvec


@dataclass(frozen=True)
class EigenEstimate:
    """``value``: the last Rayleigh quotient; ``converged``: its relative change fell to ``tol``
    within ``iterations`` products."""

    value: float
    iterations: int
    converged: bool


def power_iteration(
    matvec: Matvec,
    d: int,
    *,
    iters: int = 30,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> EigenEstimate:
    """Largest-magnitude eigenvalue of ``matvec`` (acting on rows ``(k, d)``) by power iteration
    from a seeded random start; stops when the Rayleigh quotient changes by ≤ ``tol`` (relative).
    """
    if d < 1:
        raise ValueError(f"d must be ≥ 1, got {d}")
    if iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol}")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(1, d, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    v = v / v.norm()
    previous: float | None = None
    value = 0.0
    for it in range(1, iters + 1):
        w = matvec(v)
        value = float((v * w).sum())
        norm = float(w.norm())
        if not (math.isfinite(norm) and math.isfinite(value)):
            return EigenEstimate(value, it, False)
        if norm == 0.0:  # v lies in the null space: every eigenvalue may be 0, or v was unlucky
            return EigenEstimate(0.0, it, False)
        if previous is not None and abs(value - previous) <= tol * abs(value):
            return EigenEstimate(value, it, True)
        previous = value
        v = w / norm
    return EigenEstimate(value, iters, False)


def top_eigenvalue(
    matvec: Matvec,
    d: int,
    *,
    iters: int = 30,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> float:
    """The value of :func:`power_iteration` alone (use that to know whether it converged)."""
    return power_iteration(
        matvec, d, iters=iters, tol=tol, dtype=dtype, device=device, seed=seed
    ).value
