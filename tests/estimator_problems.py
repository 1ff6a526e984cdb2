"""Float64 problems and independent numpy references for the estimator tests.

The references never call :mod:`pbrf.estimators`: curvature matrices are built in closed form
(linear models) or by :func:`pbrf.curvature.dense_gnh`, and the damped systems are solved with
``numpy.linalg.solve``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from pbrf.estimators import EstimatorInputs
from pbrf.gradients import grad_test_loss, removal_gradients
from pbrf.losses import get_loss
from pbrf.params import flat_params
from pbrf.problem import Problem

DTYPE = torch.float64


def linear_problem(
    loss: str, *, n: int, d_in: int, out: int, weight_decay: float = 0.0, seed: int = 0
) -> tuple[Problem, nn.Linear, Tensor, Tensor, Tensor]:
    """``(problem, module, θ, x, t)`` for one ``nn.Linear`` layer (weights, then bias)."""
    g = torch.Generator().manual_seed(seed)
    module = nn.Linear(d_in, out).to(DTYPE)
    with torch.no_grad():
        module.weight.copy_(torch.randn(out, d_in, generator=g, dtype=DTYPE) / d_in**0.5)
        module.bias.copy_(torch.randn(out, generator=g, dtype=DTYPE) * 0.1)
    x = torch.randn(n, d_in, generator=g, dtype=DTYPE)
    if loss == "squared_error":
        t = torch.randn(n, out, generator=g, dtype=DTYPE)
    elif loss == "cross_entropy":
        t = torch.randint(0, out, (n,), generator=g)
    else:
        t = torch.randint(0, 2, (n, out), generator=g).to(DTYPE)
    problem = Problem.from_module(module, get_loss(loss), weight_decay)
    return problem, module, flat_params(module), x, t


def linear_jacobians(x: np.ndarray, out: int) -> np.ndarray:
    """``J_i = ∂(W x_i + b)/∂θ`` for θ = [W row-major, b], shape ``(n, out, out·d_in + out)``."""
    n, d_in = x.shape
    jac = np.zeros((n, out, out * d_in + out))
    for o in range(out):
        jac[:, o, o * d_in : (o + 1) * d_in] = x
        jac[:, o, out * d_in + o] = 1.0
    return jac


def output_hessians(loss: str, y: np.ndarray) -> np.ndarray:
    """Closed-form ``∇²_y L`` per example, ``(n, out, out)``."""
    n, out = y.shape
    if loss == "squared_error":
        return np.broadcast_to(np.eye(out), (n, out, out)).copy()
    if loss == "cross_entropy":
        p = np.exp(y - y.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return np.einsum("na,ab->nab", p, np.eye(out)) - np.einsum("na,nb->nab", p, p)
    s = 1.0 / (1.0 + np.exp(-y))
    return np.einsum("na,ab->nab", s * (1 - s), np.eye(out))


def linear_gnh(loss: str, module: nn.Linear, x: Tensor, weight_decay: float) -> np.ndarray:
    """``G = (1/n) Σ J_iᵀ H_i J_i + w I`` of a linear layer, in closed form (numpy)."""
    xn = x.numpy()
    w_np = module.weight.detach().numpy()
    y = xn @ w_np.T + module.bias.detach().numpy()
    jac = linear_jacobians(xn, w_np.shape[0])
    g = np.einsum("nad,nab,nbe->de", jac, output_hessians(loss, y), jac) / xn.shape[0]
    return g + weight_decay * np.eye(g.shape[0])


def make_inputs(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    *,
    n_train: int,
    removed: Tensor,
    damping: float,
    **kwargs: object,
) -> EstimatorInputs:
    """The first ``n_train`` rows train, the rest are the test points."""
    return EstimatorInputs(
        problem=problem,
        theta=theta,
        x_train=x[:n_train],
        t_train=t[:n_train],
        removed=removed,
        x_test=x[n_train:],
        t_test=t[n_train:],
        damping=damping,
        **kwargs,  # type: ignore[arg-type]
    )


def dense_reference(
    inputs: EstimatorInputs, curvature: np.ndarray, damping: float
) -> dict[str, np.ndarray]:
    """Eq. 10/23 with ``(C + λI)⁻¹`` by ``numpy.linalg.solve``: ``delta (M, d)``, ``change``, ``self``."""
    idx = inputs.removed
    g = removal_gradients(inputs.problem, inputs.theta, inputs.x_train[idx], inputs.t_train[idx])
    g = g.detach().numpy()
    test = grad_test_loss(inputs.problem, inputs.theta, inputs.x_test, inputs.t_test).numpy()
    q = np.linalg.solve(curvature + damping * np.eye(curvature.shape[0]), g.T).T
    eps = inputs.eps
    return {"delta": eps * q, "change": eps * q @ test, "self": eps * (g * q).sum(1), "grads": g}
