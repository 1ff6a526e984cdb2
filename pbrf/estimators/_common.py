"""Pieces shared by the estimators: the gradients they all need and the Eq. 10/23 assembly."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.func import grad, vmap

from pbrf.estimators.base import Estimate, EstimatorInputs
from pbrf.gradients import grad_test_loss, removal_gradients


def removal_grads(inputs: EstimatorInputs, theta: Tensor | None = None) -> Tensor:
    """``g_S = Σ_{z∈S} ∇ℓ_z(θ)`` per removal set, ``(M, d)`` (regularizer folded in)."""
    th = inputs.theta if theta is None else theta
    idx = inputs.removed.to(inputs.x_train.device)
    return removal_gradients(inputs.problem, th, inputs.x_train[idx], inputs.t_train[idx])


def test_grad(inputs: EstimatorInputs, theta: Tensor | None = None) -> Tensor:
    """``∇L_test(θ)`` of the mean test loss over the P points (no regularizer), ``(d,)``."""
    th = inputs.theta if theta is None else theta
    return grad_test_loss(inputs.problem, th, inputs.x_test, inputs.t_test)


def test_point_grads(inputs: EstimatorInputs) -> Tensor:
    """Per-test-point loss gradients ``∇L(f(θˢ, x_p), t_p)``, ``(P, d)``."""
    problem = inputs.problem

    def one(x: Tensor, t: Tensor) -> Tensor:
        return grad(lambda th: problem.loss(problem.f(th, x[None]), t[None]).sum())(inputs.theta)

    return vmap(one)(inputs.x_test, inputs.t_test)


def from_ihvp(
    name: str,
    inputs: EstimatorInputs,
    grads: Tensor,
    ihvp: Tensor,
    info: dict[str, Any] | None = None,
) -> Estimate:
    """Assemble Eq. 10/23 from ``ihvp ≈ (G + λI)⁻¹ g_S`` ``(M, d)``.

    ``Δθ = ε ihvp``, ``ΔL = ∇L_testᵀ Δθ``, self-influence ``ε g_Sᵀ ihvp``.
    """
    eps = inputs.eps
    delta = eps * ihvp
    return Estimate(
        name=name,
        predicted_change=delta @ test_grad(inputs),
        param_response=delta,
        self_influence=eps * (grads * ihvp).sum(-1),
        info=dict(info or {}),
    )


def damped_solve_psd(matrix: Tensor, rhs: Tensor, damping: float) -> Tensor:
    """``(A + λI)⁻¹ B`` for a small dense symmetric ``A`` ``(r, r)`` and ``B`` ``(r, k)``.

    Cholesky when ``A + λI`` is numerically positive definite, a general solve otherwise.
    """
    a = 0.5 * (matrix + matrix.T)
    a = a + damping * torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    chol, info = torch.linalg.cholesky_ex(a)
    return torch.cholesky_solve(rhs, chol) if int(info) == 0 else torch.linalg.solve(a, rhs)
