"""Power iteration for the largest eigenvalue of a symmetric PSD operator.

LiSSA's scale σ must exceed the largest eigenvalue of the damped curvature or Eq. 51 diverges;
a few power iterations estimate it cheaply (GUIDE §4, ``scale="auto"``).
"""

from __future__ import annotations

import torch

from pbrf.curvature import Matvec


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
    """Largest eigenvalue of the operator ``matvec`` (acting on rows ``(k, d)``), by power iteration.

    Stops when the Rayleigh quotient changes by less than ``tol`` (relative).
    """
    if iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters}")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(1, d, generator=g, dtype=dtype).to(device)
    v = v / v.norm()
    estimate = 0.0
    for _ in range(iters):
        w = matvec(v)
        new = float((v * w).sum())
        norm = w.norm()
        if not torch.isfinite(norm) or float(norm) == 0.0:
            return new
        v = w / norm
        if estimate and abs(new - estimate) <= tol * abs(new):
            return new
        estimate = new
    return estimate
