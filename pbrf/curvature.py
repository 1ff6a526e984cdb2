"""Curvature products: Gauss-Newton (Eq. 6, 49) and Hessian (Table 4/7) times many vectors.

A *matvec* maps a block of vectors ``V`` of shape ``(k, d)`` (one vector per row) to ``A V``
row-wise, ``(k, d)``. The products here are undamped; solvers add ``λI`` themselves.

* GNH:      ``G v = (1/n) Σ_i J_iᵀ H_{y_i} J_i v + w v``  (jvp → output Hessian → vjp)
* Hessian:  ``∇²J v``                                      (forward-over-reverse)

where ``w`` is the weight decay folded into the loss (:mod:`pbrf.problem`). Both are batched over
the k vectors with ``vmap`` and, for large data, accumulated over chunks of examples.

Thread safety: ``torch.func.jvp`` keeps PyTorch's forward-mode AD level in process-global
state, so the GNH/Hessian products here and the linearized PBRF objective (Eq. 11) must not run
in two threads of one process at once; run them in sequence or in separate processes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import grad, jacrev, jvp, vjp, vmap

from pbrf.problem import Problem

Matvec = Callable[[Tensor], Tensor]


def _chunks(n: int, chunk_size: int | None) -> list[slice]:
    size = n if chunk_size is None else max(1, chunk_size)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _gnh_chunk(problem: Problem, theta: Tensor, x: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """``Σ_i J_iᵀ H_i J_i V`` over one chunk of examples (a sum, not a mean)."""
    ys, pullback = vjp(lambda th: problem.f(th, x), theta)
    dy = vmap(lambda vi: jvp(lambda th: problem.f(th, x), (theta,), (vi,))[1])(v)
    hdy = vmap(lambda dyi: problem.loss.output_hvp(ys, t, dyi))(dy)
    return vmap(lambda c: pullback(c)[0])(hdy)


def gnh_product(
    problem: Problem, theta: Tensor, x: Tensor, t: Tensor, v: Tensor, chunk_size: int | None = None
) -> Tensor:
    """``G V`` for ``V (k, d)`` over the examples ``(x, t)``; ``G`` includes the weight decay."""
    n = x.shape[0]
    out = problem.weight_decay * v
    for sl in _chunks(n, chunk_size):
        out = out + _gnh_chunk(problem, theta, x[sl], t[sl], v) / n
    return out


def hessian_product(
    problem: Problem, theta: Tensor, x: Tensor, t: Tensor, v: Tensor, chunk_size: int | None = None
) -> Tensor:
    """``∇²J(θ) V`` for ``V (k, d)`` (the "without GNH" variant of Tables 4 and 7)."""
    n = x.shape[0]
    out = torch.zeros_like(v)
    for sl in _chunks(n, chunk_size):
        xc, tc = x[sl], t[sl]
        weight = (sl.stop - sl.start) / n
        g = grad(lambda th, xc=xc, tc=tc: problem.cost(th, xc, tc))
        out = out + weight * vmap(lambda vi, g=g: jvp(g, (theta,), (vi,))[1])(v)
    return out


def curvature_matvec(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    kind: str = "gnh",
    chunk_size: int | None = None,
) -> Matvec:
    """Deterministic matvec of the GNH (``kind="gnh"``) or Hessian (``"hessian"``) on ``(x, t)``."""
    product = _product(kind)
    return lambda v: product(problem, theta, x, t, v, chunk_size)


def sampled_matvec(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    batch_size: int,
    generator: torch.Generator,
    kind: str = "gnh",
) -> Matvec:
    """Stochastic matvec: every call draws a fresh minibatch of ``batch_size`` examples
    (without replacement, from ``generator``) and multiplies by its curvature — the
    ``∇²J^{(r,t)}`` of Eq. 52."""
    product = _product(kind)
    n = x.shape[0]

    def matvec(v: Tensor) -> Tensor:
        idx = torch.randperm(n, generator=generator)[:batch_size].to(x.device)
        return product(problem, theta, x[idx], t[idx], v, None)

    return matvec


def _product(kind: str) -> Callable[..., Tensor]:
    if kind == "gnh":
        return gnh_product
    if kind == "hessian":
        return hessian_product
    raise ValueError(f"unknown curvature {kind!r}; choose 'gnh' or 'hessian'")


def dense_gnh(problem: Problem, theta: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """Explicit ``(1/n) Σ J_iᵀ H_i J_i + w I`` as a ``(d, d)`` matrix, for tiny models and tests.

    Builds the Jacobian with ``jacrev`` and the output Hessian column by column, independently of
    :func:`gnh_product`.
    """
    ys = problem.f(theta, x)
    jac = jacrev(lambda th: problem.f(th, x))(theta)  # (n, *out, d)
    n, d = ys.shape[0], theta.numel()
    jac = jac.reshape(n, -1, d)
    m = jac.shape[1]
    eye = torch.eye(m, dtype=ys.dtype, device=ys.device)
    # H_i as (n, m, m): apply output_hvp to each basis vector.
    cols = [
        problem.loss.output_hvp(ys, t, eye[j].reshape(ys.shape[1:]).expand_as(ys).contiguous())
        for j in range(m)
    ]
    h = torch.stack([c.reshape(n, m) for c in cols], dim=-1)
    g = torch.einsum("nad,nab,nbe->de", jac, h, jac) / n
    return g + problem.weight_decay * torch.eye(d, dtype=g.dtype, device=g.device)


def dense_hessian(problem: Problem, theta: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """Explicit ``∇²J(θ)`` ``(d, d)`` via ``torch.autograd.functional.hessian``."""
    return torch.autograd.functional.hessian(lambda th: problem.cost(th, x, t), theta)


def dense_from_matvec(
    matvec: Matvec, d: int, dtype: torch.dtype, device: torch.device | str = "cpu", block: int = 256
) -> Tensor:
    """Materialize a symmetric operator ``(d, d)`` from its matvec, ``block`` columns at a time."""
    eye = torch.eye(d, dtype=dtype, device=device)
    return torch.cat([matvec(eye[i : i + block]) for i in range(0, d, block)], dim=0)
