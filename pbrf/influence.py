"""Influence estimates at θˢ (Eq. 10, 23, 49, 53) and the iHVP that drives them.

With ``g_z = Σ_{z∈S} ∇_θ ℓ_z(θˢ)`` (the removed examples' loss gradients, regularizer folded in)
and ``q_z = (G + λI)⁻¹ g_z``:

* parameter response (Eq. 10 / 49):    ``θ_IF = θˢ + ε q_z``
* predicted test-loss change (Eq. 23): ``ΔL_test ≈ ε ∇L_testᵀ q_z``
* the same through s_test (Eq. 53):    ``ΔL_test ≈ ε g_zᵀ s_test``, ``s_test = (G + λI)⁻¹ ∇L_test``
* self-influence:                      ``ε g_zᵀ q_z``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.func import grad, vmap

from pbrf.curvature import curvature_matvec, sampled_matvec
from pbrf.problem import Problem
from pbrf.solvers import conjugate_gradient, exact_solve, lissa


def removal_gradients(
    problem: Problem, theta: Tensor, removed_x: Tensor, removed_t: Tensor
) -> Tensor:
    """``g_z = Σ_{z∈S_m} ∇_θ ℓ_z(θ)`` for each of M removal sets; inputs ``(M, k, ...)``, out ``(M, d)``."""

    def one(x: Tensor, t: Tensor) -> Tensor:
        return grad(lambda th: problem.example_losses(th, x, t).sum())(theta)

    return vmap(one)(removed_x, removed_t)


def eval_test_loss(problem: Problem, theta: Tensor, x_test: Tensor, t_test: Tensor) -> Tensor:
    """Mean test loss ``L(f(θ, x), t)`` over the chosen test points (no regularizer).

    ``theta`` may be ``(d,)`` or stacked ``(M, d)`` (then the result is ``(M,)``).
    """
    fn = lambda th: problem.loss(problem.f(th, x_test), t_test).mean()  # noqa: E731
    with torch.no_grad():
        return vmap(fn)(theta) if theta.dim() == 2 else fn(theta)


def grad_test_loss(problem: Problem, theta: Tensor, x_test: Tensor, t_test: Tensor) -> Tensor:
    """``∇_θ`` of the mean test loss at θ, ``(d,)``."""
    return grad(lambda th: problem.loss(problem.f(th, x_test), t_test).mean())(theta)


def influence_parameters(theta_s: Tensor, ihvp: Tensor, epsilon: float) -> Tensor:
    """``θˢ + ε (G + λI)⁻¹ g_z`` for each row of ``ihvp`` (Eq. 10 / 49)."""
    return theta_s[None] + epsilon * ihvp


def predicted_test_loss_change(test_grad: Tensor, ihvp: Tensor, epsilon: float) -> Tensor:
    """``ε ∇L_testᵀ (G + λI)⁻¹ g_z`` per removal (Eq. 23)."""
    return epsilon * (ihvp @ test_grad)


def predicted_test_loss_change_stest(
    s_test: Tensor, removal_grads: Tensor, epsilon: float
) -> Tensor:
    """``ε g_zᵀ s_test`` per removal — the s_test trick (Eq. 53)."""
    return epsilon * (removal_grads @ s_test)


def self_influence(removal_grads: Tensor, ihvp: Tensor, epsilon: float) -> Tensor:
    """``ε g_zᵀ (G + λI)⁻¹ g_z`` per removal."""
    return epsilon * (removal_grads * ihvp).sum(-1)


@dataclass
class IHVPResult:
    x: Tensor  # (k, d)
    solver: str
    info: dict[str, float | int | str | None]
    converged: bool = True
    warnings: tuple[str, ...] = ()


@dataclass
class EigenEstimate:
    value: float
    iterations: int
    converged: bool


def top_curvature_eigenvalue(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    *,
    curvature: str = "gnh",
    iters: int = 30,
    seed: int = 0,
) -> EigenEstimate:
    """λ_max of the (undamped) curvature of J on ``(x, t)`` by power iteration."""
    from pbrf.solvers.power import top_eigenvalue

    value = top_eigenvalue(
        curvature_matvec(problem, theta, x, t, curvature),
        theta.numel(),
        iters=iters,
        dtype=theta.dtype,
        device=theta.device,
        seed=seed,
    )
    return EigenEstimate(value, iters, True)


def inverse_curvature_product(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    rhs: Tensor,
    *,
    damping: float,
    solver,
    curvature: Literal["gnh", "hessian"] = "gnh",
    chunk_size: int | None = None,
    top_eigenvalue: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IHVPResult:
    """``(C + λI)⁻¹ V`` for the rows of ``rhs (k, d)``, C the GNH or Hessian of J on ``(x, t)``."""
    full = curvature_matvec(problem, theta, x, t, curvature, chunk_size)
    if solver.name == "exact":
        return IHVPResult(exact_solve(full, rhs, damping=damping), "exact", {})
    if solver.name == "cg":
        res = conjugate_gradient(
            full, rhs, damping=damping, max_iter=solver.max_iter, tol=solver.tol
        )
        return IHVPResult(
            res.x, "cg", {"iterations": res.iterations, "max_residual": float(res.residual.max())}
        )
    if solver.batch_size is None or solver.batch_size >= x.shape[0]:
        matvec = full
    else:
        gen = torch.Generator().manual_seed(solver.seed)
        matvec = sampled_matvec(problem, theta, x, t, solver.batch_size, gen, curvature)
    scale = solver.scale
    if scale == "auto" and top_eigenvalue is not None:
        scale = solver.scale_factor * (top_eigenvalue + damping)
    res = lissa(
        matvec,
        rhs,
        depth=solver.depth,
        scale=scale,
        damping=damping,
        repeats=solver.repeats,
        scale_factor=solver.scale_factor,
        eigen_matvec=full,
        progress=progress,
    )
    info = {
        "scale": res.scale,
        "top_eigenvalue": top_eigenvalue if top_eigenvalue is not None else res.top_eigenvalue,
        "depth": solver.depth,
        "repeats": solver.repeats,
        "horizon": res.horizon,
    }
    return IHVPResult(res.x, "lissa", info)
