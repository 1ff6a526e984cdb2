"""``trak``: random projection of per-example gradients, then a damped kernel solve (Park et al., 2023).

TRAK projects per-example gradient features with a random ``P (d, k)`` and scores
``τ(z', z) = φ(z')ᵀ (ΦᵀΦ)⁻¹ φ(z)``, ``Φ`` stacking the projected training features. Here the
features are the Gauss-Newton ones, ``Φ_i = L_iᵀ J_i P`` with ``H_i = L_i L_iᵀ`` the output
Hessian of example i (TRAK's ``Q = 1 − p`` reweighting of margin gradients generalised to the
full output Hessian), so that

    (1/N) ΦᵀΦ + w PᵀP = Pᵀ G P                      (G the GNH with weight decay w)

and this kernel is computed as ``Pᵀ (G P)`` with the library's curvature products (k matvecs; the
Hessian when ``inputs.curvature="hessian"``). The estimate is the influence function in the
projected coordinates, with the interface's damping:

    ΔL = ε (Pᵀ∇L_test)ᵀ (PᵀGP + λI_k)⁻¹ Pᵀ g_S,       Δθ = ε P (PᵀGP + λI_k)⁻¹ Pᵀ g_S

Conversion from TRAK's own score: ``φ'ᵀ(ΦᵀΦ)⁻¹φ = ε φ'ᵀ(ΦᵀΦ/N)⁻¹φ`` with ``ε = 1/N``, so at
``λ = 0`` (and w = 0) the two coincide; the damping adds ``Nλ`` to TRAK's ``ΦᵀΦ``. Single model
θˢ (no ensemble over retrained models), no sparsification. ``P`` has ``E[PPᵀ] = I`` (Gaussian
``N(0, 1/k)``, Rademacher ``±1/√k``), so ``λ`` acts on the parameter-space scale; with
``projection="orthogonal"`` and ``k ≥ d``, ``PPᵀ = I`` exactly and the estimate equals the exact
damped solve. Plain torch (no TRAK package: its fast projector needs CUDA).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from pbrf.curvature import curvature_matvec
from pbrf.estimators._common import damped_solve_psd, from_ihvp, removal_grads
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs, EstimatorSettings

Projection = Literal["gaussian", "rademacher", "orthogonal"]


class TrakSettings(EstimatorSettings):
    name: Literal["trak"] = "trak"
    dim: int = Field(1024, ge=1, description="k, the projection dimension")
    projection: Projection = "gaussian"
    seed: int = 0
    block: int = Field(64, ge=1, description="projection columns per curvature product")


def projection_matrix(
    d: int,
    k: int,
    kind: Projection,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Random ``P (d, k)`` with ``E[PPᵀ] = I_d``; ``"orthogonal"`` with ``k ≥ d`` has ``PPᵀ = I_d``."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        p = torch.randn(d, k, generator=gen, dtype=dtype) / math.sqrt(k)
    elif kind == "rademacher":
        p = (torch.randint(0, 2, (d, k), generator=gen).to(dtype) * 2 - 1) / math.sqrt(k)
    elif kind == "orthogonal":
        if k >= d:  # orthonormal rows: PPᵀ = I_d
            q, _ = torch.linalg.qr(torch.randn(k, d, generator=gen, dtype=dtype))
            p = q.T
        else:  # orthonormal columns, scaled so that E[PPᵀ] = I_d
            q, _ = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=dtype))
            p = q * math.sqrt(d / k)
    else:
        raise ValueError(f"unknown projection {kind!r}")
    return p.to(device)


def estimate(inputs: EstimatorInputs, settings: TrakSettings) -> Estimate:
    d = inputs.theta.numel()
    p = projection_matrix(
        d,
        settings.dim,
        settings.projection,
        seed=settings.seed,
        dtype=inputs.theta.dtype,
        device=inputs.theta.device,
    )
    matvec = curvature_matvec(
        inputs.problem,
        inputs.theta,
        inputs.x_train,
        inputs.t_train,
        inputs.curvature,
        inputs.chunk_size,
    )
    pt = p.T.contiguous()  # (k, d): one projection direction per row
    gp = torch.cat(
        [matvec(pt[i : i + settings.block]) for i in range(0, settings.dim, settings.block)]
    )
    kernel = pt @ gp.T  # PᵀGP (k, k)
    grads = removal_grads(inputs)
    coeff = damped_solve_psd(kernel, pt @ grads.T, inputs.damping)  # (k, M)
    ihvp = (p @ coeff).T
    info = {"dim": settings.dim, "projection": settings.projection, "curvature": inputs.curvature}
    return from_ihvp("trak", inputs, grads, ihvp, info)


ESTIMATOR = Estimator("trak", TrakSettings, estimate)
