"""Gradients of the removed examples' losses and of the test loss (Eq. 10, 23): no solves."""

from __future__ import annotations

from torch import Tensor
from torch.func import grad, vmap

from pbrf.problem import Problem


def removal_gradients(
    problem: Problem, theta: Tensor, removed_x: Tensor, removed_t: Tensor
) -> Tensor:
    """``g_z = Σ_{z∈S_m} ∇_θ ℓ_z(θ)`` for each of M removal sets; inputs ``(M, k, ...)``, out ``(M, d)``."""

    def one(x: Tensor, t: Tensor) -> Tensor:
        return grad(lambda th: problem.example_losses(th, x, t).sum())(theta)

    return vmap(one)(removed_x, removed_t)


def grad_test_loss(problem: Problem, theta: Tensor, x_test: Tensor, t_test: Tensor) -> Tensor:
    """``∇_θ`` of the mean test loss at θ, ``(d,)``."""
    return grad(lambda th: problem.loss(problem.f(th, x_test), t_test).mean())(theta)
