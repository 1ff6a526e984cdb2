"""Conjugate gradients for ``(A + λI) X = V`` with many right-hand sides at once (Eq. 50)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pbrf.curvature import Matvec


@dataclass
class CGResult:
    x: Tensor  # (k, d)
    iterations: int
    residual: Tensor  # (k,) relative residual ‖V − (A+λI)X‖ / ‖V‖ per right-hand side
    converged: Tensor  # (k,) bool


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def conjugate_gradient(
    matvec: Matvec, v: Tensor, *, damping: float = 0.0, max_iter: int = 1000, tol: float = 1e-8
) -> CGResult:
    """Solve ``(A + λI) x_j = v_j`` for every row of ``V (k, d)``; each row has its own step sizes.

    Stops when every relative residual is ≤ ``tol`` or after ``max_iter`` iterations; rows that
    have converged stop changing.
    """
    if damping < 0:
        raise ValueError(f"damping must be ≥ 0, got {damping}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be ≥ 1, got {max_iter}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    v2 = v if v.dim() == 2 else v[None]
    x = torch.zeros_like(v2)
    r = v2.clone()
    p = r.clone()
    rs = _dot(r, r)
    vnorm = v2.norm(dim=-1).clamp_min(torch.finfo(v2.dtype).tiny)
    done = rs.sqrt() <= tol * vnorm
    it = 0
    for it in range(1, max_iter + 1):
        if bool(done.all()):
            it -= 1
            break
        ap = matvec(p) + damping * p
        pap = _dot(p, ap)
        if bool(((pap <= 0) & ~done).any()):
            raise ValueError(
                "conjugate_gradient: the operator is not positive definite along a search "
                f"direction (pᵀ(A+λI)p = {float(pap.min()):.3g}); increase the damping (now {damping})"
            )
        alpha = torch.where(done, 0.0, rs / torch.where(done, 1.0, pap))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        rs_new = _dot(r, r)
        beta = torch.where(done, 0.0, rs_new / torch.where(rs == 0, 1.0, rs))
        p = torch.where(done[:, None], p, r + beta[:, None] * p)
        rs = torch.where(done, rs, rs_new)
        done = done | (rs.sqrt() <= tol * vnorm)
    residual = (v2 - matvec(x) - damping * x).norm(dim=-1) / vnorm
    x = x if v.dim() == 2 else x[0]
    return CGResult(x=x, iterations=it, residual=residual, converged=residual <= 10 * tol)
