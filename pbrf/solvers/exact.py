"""Exact ``(A + λI)⁻¹ V`` by a dense Cholesky solve, for small models and as the reference."""

from __future__ import annotations

import torch
from torch import Tensor

from pbrf.curvature import Matvec, dense_from_matvec


def exact_solve(matrix_or_matvec: Tensor | Matvec, v: Tensor, *, damping: float = 0.0) -> Tensor:
    """Solve ``(A + λI) X = V`` for ``V (k, d)`` exactly (rows are right-hand sides).

    ``A`` is a dense ``(d, d)`` symmetric PSD matrix or a matvec (materialized column block by
    column block: ``d`` must be small).
    """
    if damping < 0:
        raise ValueError(f"damping must be ≥ 0, got {damping}")
    v2 = v if v.dim() == 2 else v[None]
    d = v2.shape[-1]
    a = (
        matrix_or_matvec
        if isinstance(matrix_or_matvec, Tensor)
        else dense_from_matvec(matrix_or_matvec, d, v2.dtype, v2.device)
    )
    a = 0.5 * (a + a.T) + damping * torch.eye(d, dtype=a.dtype, device=a.device)
    chol, info = torch.linalg.cholesky_ex(a)
    # Cholesky when A + λI is numerically positive definite, a general solve otherwise.
    x = torch.cholesky_solve(v2.T, chol).T if int(info) == 0 else torch.linalg.solve(a, v2.T).T
    return x if v.dim() == 2 else x[0]
