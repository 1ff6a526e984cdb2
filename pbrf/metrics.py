"""Metrics of Section 6: the output-space gap between two optima, and correlations."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vmap

from pbrf.problem import ModelFn, Problem


def output_distance(
    f: ModelFn, theta_a: Tensor, theta_b: Tensor, x: Tensor, chunk_size: int = 1024
) -> Tensor:
    """``E_x ‖f(θ_a, x) − f(θ_b, x)‖₂`` over the inputs ``x`` (Section 6), per model.

    ``theta_a`` and ``theta_b`` are ``(M, d)`` (or ``(d,)``, broadcast). Returns ``(M,)``; the norm
    is over all output entries of one example (e.g. all logits of a sequence).
    """
    a = theta_a if theta_a.dim() == 2 else theta_a[None]
    b = theta_b if theta_b.dim() == 2 else theta_b[None]
    if a.shape[0] != b.shape[0]:
        a, b = torch.broadcast_tensors(a, b)
    total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
    fm = vmap(f, in_dims=(0, None))
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk_size):
            xc = x[i : i + chunk_size]
            diff = (fm(a, xc) - fm(b, xc)).reshape(a.shape[0], xc.shape[0], -1)
            total += diff.norm(dim=-1).sum(dim=-1)
    return total / x.shape[0]


def output_norm(f: ModelFn, theta: Tensor, x: Tensor, chunk_size: int = 1024) -> Tensor:
    """``E_x ‖f(θ, x)‖₂`` — the outputs' own scale, against which gaps are read."""
    with torch.no_grad():
        total = sum(
            f(theta, x[i : i + chunk_size]).flatten(1).norm(dim=1).sum()
            for i in range(0, x.shape[0], chunk_size)
        )
    return total / x.shape[0]


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two 1-D samples (NaN when either is constant)."""
    a, b = a.double().flatten(), b.double().flatten()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"need two samples of equal length ≥ 2, got {a.numel()} and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float((a @ b) / denom) if float(denom) > 0 else float("nan")


def rankdata(a: Tensor) -> Tensor:
    """Ranks 1..n with ties given their average rank (as ``scipy.stats.rankdata``)."""
    a = a.double().flatten()
    order = torch.argsort(a, stable=True)
    ranks = torch.empty_like(a)
    ranks[order] = torch.arange(1, a.numel() + 1, dtype=a.dtype, device=a.device)
    for value in torch.unique(a):
        tie = a == value
        if int(tie.sum()) > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank-order correlation: Pearson of the (tie-averaged) ranks."""
    return pearson(rankdata(a), rankdata(b))


def eval_test_loss(problem: Problem, theta: Tensor, x_test: Tensor, t_test: Tensor) -> Tensor:
    """Mean test loss ``L(f(θ, x), t)`` over the chosen test points (no regularizer).

    ``theta`` may be ``(d,)`` or stacked ``(M, d)`` (then the result is ``(M,)``).
    """
    fn = lambda th: problem.loss(problem.f(th, x_test), t_test).mean()  # noqa: E731
    with torch.no_grad():
        return vmap(fn)(theta) if theta.dim() == 2 else fn(theta)
