"""Tiny float64 problems shared by the library tests (small enough for dense references)."""

from __future__ import annotations

import torch
from torch import Tensor

from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem

DTYPE = torch.float64


def tiny_data(
    loss: str, n: int = 24, d_in: int = 5, out: int = 3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Random inputs and targets matching ``loss`` (classes, reals, or bits)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=DTYPE)
    if loss == "cross_entropy":
        t = torch.randint(0, out, (n,), generator=g)
    elif loss == "squared_error":
        t = torch.randn(n, out, generator=g, dtype=DTYPE)
    else:
        t = torch.randint(0, 2, (n, out), generator=g).to(DTYPE)
    return x, t


def tiny_problem(
    loss: str = "cross_entropy",
    *,
    n: int = 24,
    d_in: int = 5,
    out: int = 3,
    width: int = 6,
    weight_decay: float = 0.0,
    activation: str = "tanh",
    seed: int = 0,
) -> tuple[Problem, Tensor, Tensor, Tensor]:
    """``(problem, θ, x, t)`` for a 1-hidden-layer MLP in float64 (smooth activation by default)."""
    model = build_model(
        "mlp",
        input_shape=(d_in,),
        output_dim=out,
        seed=seed,
        width=width,
        depth=1,
        activation=activation,
    )
    model = model.to(DTYPE)
    problem = Problem.from_module(model, get_loss(loss), weight_decay)
    x, t = tiny_data(loss, n, d_in, out, seed)
    return problem, flat_params(model), x, t


def random_spd(d: int, cond: float, seed: int = 0) -> Tensor:
    """A random symmetric positive-definite matrix with eigenvalues log-spaced in ``[1, cond]``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DTYPE))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), d, dtype=DTYPE)
    return (q * eig) @ q.T
