"""Full-batch L-BFGS (Liu & Nocedal, 1989) for M independent problems at once.

Used for logistic regression (Section 6.1: "trained using L-BFGS"). Each model keeps its own
curvature pairs, two-loop recursion and Armijo backtracking step; all M run in lock step as
``(M, d)`` tensor operations, and a model that has converged simply stops moving. With M = 1
this is the same code path as a single run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

StackedFun = Callable[[Tensor], Tensor]  # (M, d) -> (M,)
StackedFunGrad = Callable[[Tensor], tuple[Tensor, Tensor]]  # (M, d) -> ((M, d), (M,))


@dataclass
class LBFGSResult:
    theta: Tensor  # (M, d)
    value: Tensor  # (M,)
    grad_norm: Tensor  # (M,) ‖∇‖_∞ at the end
    iterations: Tensor  # (M,) iterations each model took
    converged: Tensor  # (M,) bool: stopped before max_iter (tolerance or machine precision)
    at_tolerance: Tensor  # (M,) bool: ‖∇‖∞ ≤ tol_grad
    at_precision: Tensor  # (M,) bool: stopped because f could no longer decrease in floating point


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def lbfgs_stacked(
    grad_and_value: StackedFunGrad,
    value: StackedFun,
    theta0: Tensor,
    *,
    max_iter: int = 500,
    history: int = 20,
    tol_grad: float = 1e-10,
    c1: float = 1e-4,
    max_line_search: int = 50,
    progress: Callable[[int, Tensor], None] | None = None,
) -> LBFGSResult:
    """Minimize M objectives; ``grad_and_value(θ)`` returns ``(∇, f)`` row-wise for ``θ (M, d)``.

    A model stops at ``‖∇‖∞ ≤ tol_grad``, or when no Armijo step decreases its value any more
    (the objective's floating-point resolution, typically ‖∇‖ ~ √ulp(f)), or at ``max_iter``;
    ``converged`` is False only for the last case.
    """
    theta = theta0.clone()
    m, d = theta.shape
    g, f = grad_and_value(theta)
    s_hist = theta.new_zeros(m, history, d)
    y_hist = theta.new_zeros(m, history, d)
    rho = theta.new_zeros(m, history)
    valid = torch.zeros(m, history, dtype=torch.bool, device=theta.device)
    gamma = theta.new_ones(m)
    iterations = torch.zeros(m, dtype=torch.long, device=theta.device)
    active = g.abs().amax(-1) > tol_grad
    ptr = 0
    for it in range(max_iter):
        if not bool(active.any()):
            break
        # Two-loop recursion, newest pair first.
        q = g.clone()
        alphas = []
        for j in [(ptr - 1 - i) % history for i in range(history)]:
            a = torch.where(valid[:, j], rho[:, j] * _dot(s_hist[:, j], q), 0.0)
            q = q - a[:, None] * y_hist[:, j]
            alphas.append((j, a))
        r = gamma[:, None] * q
        for j, a in reversed(alphas):
            b = torch.where(valid[:, j], rho[:, j] * _dot(y_hist[:, j], r), 0.0)
            r = r + (a - b)[:, None] * s_hist[:, j]
        direction = -r
        slope = _dot(g, direction)
        not_descent = slope >= 0
        if bool(not_descent.any()):  # lost curvature information: restart from steepest descent
            direction = torch.where(not_descent[:, None], -g, direction)
            valid[not_descent] = False
            slope = _dot(g, direction)
        has_pairs = valid.any(-1)
        step = torch.where(has_pairs, 1.0, torch.clamp(1.0 / g.abs().sum(-1), max=1.0))
        # Armijo backtracking, per model.
        accepted = ~active
        for _ in range(max_line_search):
            f_try = value(theta + step[:, None] * direction)
            ok = torch.isfinite(f_try) & (f_try <= f + c1 * step * slope)
            accepted = accepted | ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, 0.5 * step)
        moving = active & accepted
        new_theta = torch.where(moving[:, None], theta + step[:, None] * direction, theta)
        new_g, new_f = grad_and_value(new_theta)
        s = new_theta - theta
        y = new_g - g
        sy = _dot(s, y)
        good = moving & (sy > 1e-12 * _dot(s, s).clamp_min(1e-300).sqrt() * _dot(y, y).sqrt())
        s_hist[:, ptr], y_hist[:, ptr] = s, y
        rho[:, ptr] = torch.where(good, 1.0 / torch.where(good, sy, 1.0), 0.0)
        valid[:, ptr] = good
        gamma = torch.where(good, sy / _dot(y, y).clamp_min(1e-300), gamma)
        ptr = (ptr + 1) % history
        iterations += moving.long()
        f_prev = f
        theta, g, f = new_theta, new_g, new_f
        # A model stops when its gradient is small or its value no longer decreases (at the
        # optimum Armijo steps only shuffle the last bits of f).
        active = moving & (g.abs().amax(-1) > tol_grad) & (new_f < f_prev)
        if progress is not None:
            progress(it, f)
    grad_norm = g.abs().amax(-1)
    at_tol = grad_norm <= tol_grad
    converged = ~active | at_tol
    return LBFGSResult(theta, f, grad_norm, iterations, converged, at_tol, converged & ~at_tol)
