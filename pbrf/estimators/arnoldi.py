"""``arnoldi``: influence restricted to the top eigenspace of G (Schioppa et al., 2021).

Arnoldi iteration with full reorthogonalization (classical Gram-Schmidt, applied twice) builds
an orthonormal Krylov basis ``Q`` of n vectors from a seeded random start, using only curvature
matvecs; the Ritz pairs of ``H = Q G Qᵀ`` (symmetrized; G is symmetric, so this is Lanczos with
full reorthogonalization) give approximate eigenpairs ``(μ_i, u_i)``, and the ``r`` of largest
``|μ_i|`` are kept: ``U (r, d)``. On breakdown (an invariant subspace is found) the iteration
restarts from a fresh random vector orthogonal to ``Q``, so ``n = d`` always spans the space.

The iHVP is taken inside that subspace, with the interface's damping added to each eigenvalue:

    (G + λI)⁻¹ g  ≈  Uᵀ diag(1/(μ_i + λ)) U g                            (remainder="drop")
                  +  (I − UᵀU) g / λ                                    (remainder="damping")

``"drop"`` is Schioppa et al.'s choice: the remaining spectrum contributes nothing (its
directions are projected out). ``"damping"`` treats the remaining eigenvalues as 0, which is
exact when G has rank ≤ r, and otherwise overweights the discarded directions by ``1/λ``. With
``r = n = d`` both equal the exact damped solve. Eq. 10/23 are then assembled as for every other
estimator (ε = 1/N, same sign); the weight decay is part of G, so nothing else is converted.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from pbrf.curvature import Matvec, curvature_matvec
from pbrf.estimators._common import from_ihvp, removal_grads
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs, EstimatorSettings


class ArnoldiSettings(EstimatorSettings):
    name: Literal["arnoldi"] = "arnoldi"
    rank: int = Field(50, ge=1, description="r, eigenpairs kept (capped at d)")
    iterations: int | None = Field(
        None, ge=1, description="n, Arnoldi iterations (≥ rank; default 2·rank; capped at d)"
    )
    remainder: Literal["drop", "damping"] = "drop"
    seed: int = 0

    @model_validator(mode="after")
    def _enough_iterations(self) -> ArnoldiSettings:
        if self.iterations is not None and self.iterations < self.rank:
            raise ValueError(f"iterations ({self.iterations}) must be ≥ rank ({self.rank})")
        return self


def _orthogonalize(w: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
    """``w − Bᵀ(B w)`` twice (CGS2) and the total coefficients ``B w``; ``basis (j, d)``."""
    h = basis @ w
    w = w - basis.T @ h
    h2 = basis @ w
    return w - basis.T @ h2, h + h2


def arnoldi_eigenpairs(
    matvec: Matvec,
    d: int,
    iterations: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
    seed: int = 0,
) -> tuple[Tensor, Tensor, int]:
    """Ritz values ``(n,)`` and vectors ``(n, d)`` of a symmetric operator from n ≤ d Arnoldi steps.

    Returns them sorted by decreasing ``|μ|``, with the number of restarts after breakdown.
    """
    n = min(iterations, d)
    gen = torch.Generator().manual_seed(seed)

    def fresh(basis: Tensor) -> Tensor:
        for _ in range(10):
            v = torch.randn(d, generator=gen, dtype=dtype).to(device)
            v, _ = _orthogonalize(v, basis)
            norm = v.norm()
            if float(norm) > 1e-8:
                return v / norm
        raise RuntimeError("arnoldi: could not draw a vector outside the current basis")

    basis = torch.empty(0, d, dtype=dtype, device=device)
    hess = torch.zeros(n, n, dtype=dtype, device=device)
    q = fresh(basis)
    restarts = 0
    scale = 0.0
    for j in range(n):
        basis = torch.cat([basis, q[None]])
        w = matvec(q[None])[0]
        w, h = _orthogonalize(w, basis)
        hess[: j + 1, j] = h
        scale = max(scale, float(h.abs().max()))
        if j + 1 == n:
            break
        norm = float(w.norm())
        if norm <= 1e-10 * max(scale, 1e-30):
            q = fresh(basis)  # invariant subspace found: restart outside it
            restarts += 1
        else:
            hess[j + 1, j] = norm
            q = w / norm
    sym = 0.5 * (hess + hess.T)
    mu, vecs = torch.linalg.eigh(sym)
    order = torch.argsort(mu.abs(), descending=True)
    return mu[order], (basis.T @ vecs[:, order]).T, restarts


def estimate(inputs: EstimatorInputs, settings: ArnoldiSettings) -> Estimate:
    if settings.remainder == "damping" and inputs.damping <= 0:
        raise ValueError("arnoldi remainder='damping' needs damping > 0")
    d = inputs.theta.numel()
    rank = min(settings.rank, d)
    iterations = min(settings.iterations or 2 * settings.rank, d)
    matvec = curvature_matvec(
        inputs.problem,
        inputs.theta,
        inputs.x_train,
        inputs.t_train,
        inputs.curvature,
        inputs.chunk_size,
    )
    mu, vecs, restarts = arnoldi_eigenpairs(
        matvec,
        d,
        iterations,
        dtype=inputs.theta.dtype,
        device=inputs.theta.device,
        seed=settings.seed,
    )
    mu, u = mu[:rank], vecs[:rank]
    grads = removal_grads(inputs)
    coeff = grads @ u.T  # (M, r)
    ihvp = (coeff / (mu + inputs.damping)) @ u
    if settings.remainder == "damping":
        ihvp = ihvp + (grads - coeff @ u) / inputs.damping
    warnings = []
    if bool((mu + inputs.damping <= 0).any()):
        warnings.append("some kept eigenvalues μ_i + λ ≤ 0 (indefinite curvature)")
    info = {
        "rank": rank,
        "iterations": iterations,
        "restarts": restarts,
        "remainder": settings.remainder,
        "top_eigenvalue": float(mu[0]),
        "smallest_kept_eigenvalue": float(mu[-1]),
        "curvature": inputs.curvature,
        "warnings": warnings,
    }
    return from_ihvp("arnoldi", inputs, grads, ihvp, info)


ESTIMATOR = Estimator("arnoldi", ArnoldiSettings, estimate)
