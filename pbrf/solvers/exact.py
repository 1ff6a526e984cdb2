"""Direct solves of ``(C + λI) X = V``: the exact references of Appendix D's iterative solvers.

* :func:`dense_solve` (*primal*): Cholesky of the dense ``d × d`` matrix ``C + λI``.
* :func:`dual_solve` (*dual*, Woodbury): for ``C = AᵀA/n + wI`` with a factor ``A`` of ``m < d``
  rows — the Gauss-Newton Hessian of Eq. 6/49 has ``A`` = the stacked ``H_i^{1/2} J_i`` — with
  ``μ = w + λ``::

      (C + λI)⁻¹ = (1/μ) (I − Aᵀ (nμI + AAᵀ)⁻¹ A)

  so only the ``m × m`` kernel ``AAᵀ`` is factored.

Both try Cholesky first. If it fails (the matrix plus shift is not numerically positive definite,
e.g. an indefinite Hessian) they fall back to LU with partial pivoting, and if that meets a zero
pivot (a singular system) to a minimum-norm least-squares solve — each fallback recorded as a
warning on the result, never silently. A matrix may be given as a tensor (never modified; the
factorization works on a copy) or as a zero-argument *builder*, which lets the solver factor the
freshly built matrix in place (memory: one matrix) and call the builder again only for a fallback.
Matrices are symmetric and only their lower triangle is read.
"""

from __future__ import annotations

import math
import warnings as _warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pbrf.curvature import Matvec, dense_from_matvec

MatrixSource = Tensor | Callable[[], Tensor]
Factor = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class DirectResult:
    x: Tensor  # (k, d), or (d,) for a single right-hand side, in the matrix's dtype
    method: str  # "primal" | "dual"
    factorization: str  # "cholesky" | "lu" | "lstsq"
    residual: Tensor  # (k,) relative residual ‖v − (C+λI)x‖/‖v‖ (NaN where not checked)
    refinements: int  # iterative-refinement steps applied (dual solve)
    converged: bool  # factorization succeeded and every residual is ≤ √eps of the dtype
    warnings: tuple[str, ...]


class _Factorization:
    """A factored symmetric ``B`` (Cholesky, LU or kept for least squares) that solves ``B X = R``."""

    def __init__(self, kind: str, data: Tensor, pivots: Tensor | None = None) -> None:
        self.kind, self.data, self.pivots = kind, data, pivots

    def solve(self, rhs: Tensor) -> Tensor:  # rhs (size, k)
        if self.kind == "cholesky":
            return torch.cholesky_solve(rhs, self.data)
        if self.kind == "lu":
            assert self.pivots is not None
            return torch.linalg.lu_solve(self.data, self.pivots, rhs)
        driver = "gelsd" if self.data.device.type == "cpu" else None
        return torch.linalg.lstsq(self.data, rhs, driver=driver).solution


def _mirror_lower_(a: Tensor, block: int = 1024) -> Tensor:
    """Copy the strict lower triangle onto the upper one, in place, block by block."""
    size = a.shape[0]
    for j0 in range(0, size, block):
        j1 = min(j0 + block, size)
        a[:j0, j0:j1] = a[j0:j1, :j0].T
        diag = a[j0:j1, j0:j1]
        diag.copy_(diag.tril() + diag.tril(-1).T)
    return a


def _factorize(get: Callable[[], Tensor], shift: float) -> tuple[_Factorization, list[str]]:
    """Factor ``B = get() + shift·I`` (``get`` returns a fresh matrix each call, which is
    overwritten): Cholesky, else LU, else kept for least squares."""
    a = get()
    size = a.shape[0]
    a.diagonal().add_(shift)
    info = torch.empty((), dtype=torch.int32, device=a.device)
    torch.linalg.cholesky_ex(a, out=(a, info))
    minor = int(info)
    if minor == 0 and bool(torch.isfinite(a.diagonal()).all()):
        return _Factorization("cholesky", a), []
    del a
    why = (
        f"Cholesky failed at leading minor {minor} of {size}: the matrix plus shift "
        f"{shift:.4g} is not numerically positive definite"
        if minor > 0
        else "Cholesky produced non-finite values"
    )
    a = _mirror_lower_(get())
    a.diagonal().add_(shift)
    pivots = torch.empty(size, dtype=torch.int32, device=a.device)
    torch.linalg.lu_factor_ex(a, out=(a, pivots, info))
    zero_pivot = int(info)
    if zero_pivot == 0 and bool(torch.isfinite(a.diagonal()).all()):
        return _Factorization("lu", a, pivots), [f"{why}; solved by LU with partial pivoting"]
    del a
    a = _mirror_lower_(get())
    a.diagonal().add_(shift)
    return _Factorization("lstsq", a), [
        f"{why}, and LU met a zero pivot at {zero_pivot} (the system is singular); "
        "returned the minimum-norm least-squares solution"
    ]


def _getter(matrix: MatrixSource) -> Callable[[], Tensor]:
    if isinstance(matrix, Tensor):
        return lambda: matrix.clone()
    return matrix


def _check_common(v: Tensor, damping: float) -> Tensor:
    if not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite number ≥ 0, got {damping}")
    if v.dim() not in (1, 2) or v.shape[-1] == 0:
        raise ValueError(f"v must have shape (d,) or (k, d) with d ≥ 1, got {tuple(v.shape)}")
    return v if v.dim() == 2 else v[None]


def _result(
    v: Tensor, x: Tensor, method: str, fact: str, residual: Tensor, refinements: int,
    warnings: list[str],
) -> DirectResult:  # fmt: skip
    tol = math.sqrt(torch.finfo(x.dtype).eps)
    checked = ~torch.isnan(residual)
    bad = checked & ~(residual <= tol)
    if bool(bad.any()):
        worst = int(torch.where(checked, residual, -1.0).argmax())
        warnings.append(
            f"the {method} {fact} solve is inaccurate: relative residual "
            f"{float(residual[worst]):.3g} > {tol:.3g} (right-hand side {worst})"
        )
    ok = fact != "lstsq" and bool(torch.isfinite(x).all()) and not bool(bad.any())
    return DirectResult(
        x if v.dim() == 2 else x[0], method, fact, residual, refinements, ok, tuple(warnings)
    )


def dense_solve(
    matrix: MatrixSource,
    v: Tensor,
    *,
    damping: float = 0.0,
    matvec: Matvec | None = None,
) -> DirectResult:
    """Solve ``(C + λI) X = V`` for the rows of ``V (k, d)`` with ``C`` a dense symmetric
    ``(d, d)`` matrix (or its builder); computed in the matrix's dtype.

    The residual is checked against ``matrix`` when it is a tensor, else against ``matvec``
    (the undamped ``C``) when given.
    """
    v2 = _check_common(v, damping)
    if isinstance(matrix, Tensor) and (
        matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != v2.shape[1]
    ):
        raise ValueError(
            f"matrix must be ({v2.shape[1]}, {v2.shape[1]}) for v of shape {tuple(v.shape)}, "
            f"got {tuple(matrix.shape)}"
        )
    fact, warnings = _factorize(_getter(matrix), damping)
    rhs = v2.to(fact.data.dtype)
    x = fact.solve(rhs.T).T
    if isinstance(matrix, Tensor):
        applied = x @ matrix.T + damping * x
    elif matvec is not None:
        applied = matvec(x) + damping * x
    else:
        applied = None
    if applied is None:
        residual = torch.full((x.shape[0],), math.nan, dtype=x.dtype, device=x.device)
    else:
        residual = (rhs - applied).norm(dim=-1) / rhs.norm(dim=-1).clamp_min(
            torch.finfo(x.dtype).tiny
        )
    return _result(v, x, "primal", fact.kind, residual, 0, warnings)


def dual_solve(
    kernel: MatrixSource,
    factor: Factor,
    factor_t: Factor,
    v: Tensor,
    *,
    n: int,
    damping: float,
    weight_decay: float = 0.0,
    refine: int = 1,
) -> DirectResult:
    """``(AᵀA/n + wI + λI)⁻¹ V`` through the ``m × m`` kernel ``AAᵀ`` (Woodbury; see the module).

    ``factor(V (k, d)) -> A V`` as ``(k, m)``; ``factor_t(U (k, m)) -> Aᵀ U`` as ``(k, d)``;
    ``kernel`` is ``AAᵀ`` (or its builder), computed in its dtype. With ``μ = w + λ`` small the
    formula subtracts nearly equal terms, so up to ``refine`` steps of iterative refinement
    (residual through ``factor``/``factor_t``, correction through the same factorization) recover
    the lost digits; the result records the final residual.
    """
    v2 = _check_common(v, damping)
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number ≥ 0, got {weight_decay}")
    mu = weight_decay + damping
    if not mu > 0:
        raise ValueError(
            f"the dual solve needs weight_decay + damping > 0, got {weight_decay} + {damping}"
        )
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    if refine < 0:
        raise ValueError(f"refine must be ≥ 0, got {refine}")
    fact, warnings = _factorize(_getter(kernel), n * mu)
    rhs = v2.to(fact.data.dtype)

    def apply_inverse(r: Tensor) -> Tensor:
        u = fact.solve(factor(r).T).T
        return (r - factor_t(u)) / mu

    def residual_of(x: Tensor) -> Tensor:
        return rhs - (factor_t(factor(x)) / n + mu * x)

    norm = rhs.norm(dim=-1).clamp_min(torch.finfo(rhs.dtype).tiny)
    x = apply_inverse(rhs)
    res = residual_of(x)
    steps = 0
    for _ in range(refine):
        candidate = x + apply_inverse(res)
        cand_res = residual_of(candidate)
        if not bool(cand_res.norm() < res.norm()):
            break
        x, res, steps = candidate, cand_res, steps + 1
    return _result(v, x, "dual", fact.kind, res.norm(dim=-1) / norm, steps, warnings)


def exact_solve(matrix_or_matvec: Tensor | Matvec, v: Tensor, *, damping: float = 0.0) -> Tensor:
    """``(A + λI)⁻¹ V`` as a tensor, for small references: ``A`` a dense symmetric ``(d, d)``
    matrix, or a matvec materialized column block by column block (``d`` must be small).

    Any fallback from Cholesky is reported through :mod:`warnings` (use :func:`dense_solve` to
    get it as data).
    """
    v2 = _check_common(v, damping)
    a = (
        matrix_or_matvec
        if isinstance(matrix_or_matvec, Tensor)
        else dense_from_matvec(matrix_or_matvec, v2.shape[-1], v2.dtype, v2.device)
    )
    res = dense_solve(a, v, damping=damping)
    for message in res.warnings:
        _warnings.warn(message, RuntimeWarning, stacklevel=2)
    return res.x
