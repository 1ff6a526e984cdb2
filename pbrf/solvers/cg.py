"""Conjugate gradients for ``(A + λI) X = V`` with many right-hand sides at once (Eq. 50).

Each row of ``V`` runs its own CG recursion (own step sizes); all rows share one call of the
matvec per iteration, so k right-hand sides cost about one k-vector curvature product per
iteration. The recursive residual drifts from the true one in finite precision, so a row is only
accepted once its *true* residual ``‖v − (A + λI)x‖ / ‖v‖`` is ≤ ``tol``; a row whose recursive
residual reached ``tol`` but whose true residual did not is restarted from its true residual.
When a restart no longer halves any such residual, the solve has hit the accuracy its dtype
allows (e.g. a 1e-8 tolerance in float32) and stops with a warning rather than iterating on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pbrf.curvature import Matvec
from pbrf.solvers.errors import NotPositiveDefiniteError


@dataclass(frozen=True)
class CGResult:
    x: Tensor  # (k, d), or (d,) for a single right-hand side
    iterations: Tensor  # (k,) int: iterations each right-hand side took
    residual: Tensor  # (k,) true relative residual ‖v − (A+λI)x‖ / ‖v‖
    converged: bool  # every residual ≤ tol
    warnings: tuple[str, ...]
    restarts: int  # restarts from the true residual (finite-precision drift)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def conjugate_gradient(
    matvec: Matvec,
    v: Tensor,
    *,
    damping: float = 0.0,
    max_iter: int = 1000,
    tol: float = 1e-8,
    progress: Callable[[int, int], None] | None = None,
) -> CGResult:
    """Solve ``(A + λI) x_j = v_j`` for every row of ``V (k, d)`` (Eq. 50), ``A`` symmetric.

    Stops when every true relative residual is ≤ ``tol`` or after ``max_iter`` iterations
    (one matvec of the still-active rows each); rows that have converged stop changing.
    ``converged=False`` comes with a warning naming the worst residual.

    Raises :class:`NotPositiveDefiniteError` when a search direction has ``pᵀ(A+λI)p ≤ 0``.
    """
    if not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite number ≥ 0, got {damping}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be ≥ 1, got {max_iter}")
    if not (math.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    if v.dim() not in (1, 2) or v.shape[-1] == 0:
        raise ValueError(f"v must have shape (d,) or (k, d) with d ≥ 1, got {tuple(v.shape)}")
    v2 = v if v.dim() == 2 else v[None]
    k = v2.shape[0]

    def operator(m: Tensor) -> Tensor:
        return matvec(m) + damping * m

    vnorm = v2.norm(dim=-1)
    safe = torch.where(vnorm > 0, vnorm, 1.0)
    x = torch.zeros_like(v2)
    r = v2.clone()
    p = r.clone()
    rs = _dot(r, r)
    done = rs.sqrt() <= tol * vnorm  # a zero right-hand side is solved by x = 0
    iterations = torch.zeros(k, dtype=torch.long)
    restarts = 0
    it = 0
    true_res = torch.where(vnorm > 0, 1.0, 0.0).to(v2.dtype)
    last_check: Tensor | None = None
    stagnated = False
    while True:
        if bool(done.all()):
            # accept a row only on its true residual; restart rows that drifted
            resid = v2 - operator(x)
            true_res = resid.norm(dim=-1) / safe
            drifted = true_res > tol
            if not bool(drifted.any()) or it >= max_iter:
                break
            if last_check is not None and not bool(
                (true_res[drifted] < 0.5 * last_check[drifted]).any()
            ):
                stagnated = True  # a restart no longer helps: the dtype's attainable accuracy
                break
            last_check = true_res
            restarts += 1
            r = torch.where(drifted[:, None], resid, r)
            p = torch.where(drifted[:, None], r, p)
            rs = torch.where(drifted, _dot(r, r), rs)
            done = ~drifted
        if it >= max_iter:
            true_res = (v2 - operator(x)).norm(dim=-1) / safe
            break
        it += 1
        active = ~done
        ap = operator(p)
        pap = _dot(p, ap)
        bad = active & ~(pap > 0)
        if bool(bad.any()):
            rows = bad.nonzero().flatten()
            curv = pap[rows] / _dot(p[rows], p[rows])
            raise NotPositiveDefiniteError(
                curvature=float(curv.min()) if bool(torch.isfinite(curv).all()) else math.nan,
                damping=damping,
                iteration=it,
                rhs=tuple(rows.tolist()),
            )
        alpha = torch.where(active, rs / torch.where(active, pap, 1.0), 0.0)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        rs_new = _dot(r, r)
        beta = torch.where(active, rs_new / torch.where(rs > 0, rs, 1.0), 0.0)
        p = torch.where(active[:, None], r + beta[:, None] * p, p)
        rs = torch.where(active, rs_new, rs)
        iterations = torch.where(active, it, iterations)
        done = done | (rs.sqrt() <= tol * vnorm)
        if progress is not None:
            progress(it, max_iter)
    converged = bool((true_res <= tol).all())
    warnings: tuple[str, ...] = ()
    if not converged:
        bad_rows = (true_res > tol).nonzero().flatten()
        worst = int(true_res.argmax())
        why = (
            f"stagnated after {it} iterations and {restarts} restart(s) (the attainable "
            f"accuracy of {str(v2.dtype).removeprefix('torch.')} for this conditioning)"
            if stagnated
            else f"stopped after {it} iterations (max_iter={max_iter})"
        )
        warnings = (
            f"conjugate gradients {why} with relative residual {float(true_res[worst]):.3g} > "
            f"tol {tol:g} on {len(bad_rows)} of {k} right-hand side(s) (worst: {worst})",
        )
    x = x if v.dim() == 2 else x[0]
    return CGResult(x, iterations, true_res, converged, warnings, restarts)
