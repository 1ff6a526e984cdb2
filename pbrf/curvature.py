"""Curvature products: Gauss-Newton (Eq. 6, 49) and Hessian (Table 4/7) times many vectors.

A *matvec* maps a block of vectors ``V`` of shape ``(k, d)`` (one vector per row) to ``A V``
row-wise, ``(k, d)``. The products here are undamped; solvers add ``λI`` themselves.

* GNH:      ``G v = (1/n) Σ_i J_iᵀ H_{y_i} J_i v + w v``  (jvp → output Hessian → vjp)
* Hessian:  ``∇²J v``                                      (forward-over-reverse)

where ``w`` is the weight decay folded into the loss (:mod:`pbrf.problem`). Both are batched over
the k vectors with ``vmap`` and, for large data, accumulated over chunks of examples.

:class:`LinearizedGNH` is the GNH of Eq. 49 linearized once at θ: it keeps the outputs and the
reverse-mode pullbacks of ``f(θ, x)``, so each product afterwards is one batched jvp and one
batched vjp. It also exposes the Gauss-Newton *factor* ``A`` (rows ``H_i^{1/2} J_i``, so that
``G = AᵀA/N + wI``), its kernel ``AAᵀ`` and the dense ``G``: what the direct solves of
:mod:`pbrf.solvers.exact` need.

Thread safety: ``torch.func.jvp`` keeps PyTorch's forward-mode AD level in process-global
state, so the GNH/Hessian products here and the linearized PBRF objective (Eq. 11) must not run
in two threads of one process at once; run them in sequence or in separate processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import grad, jacrev, jvp, vjp, vmap

from pbrf import mlpkernel
from pbrf.losses import OutputLoss
from pbrf.problem import Problem

Matvec = Callable[[Tensor], Tensor]
Pullback = Callable[[Tensor], tuple[Tensor, ...]]


def _chunks(n: int, chunk_size: int | None) -> list[slice]:
    size = n if chunk_size is None else max(1, chunk_size)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def gnh_kernel(problem: Problem, kernel: str = "auto") -> mlpkernel.MLPShape | None:
    """The MLP whose GNH products run as explicit batched matrix products, or ``None`` for
    ``jvp``/``vjp``: ``kernel="mlp"`` (an MLP is required), ``"auto"`` when
    ``pbrf.mlpkernel.AUTO`` is set, never for the other kernels (``reference``, ``vmap``,
    ``loop``). Both give the same products up to float rounding (tests)."""
    if kernel == "mlp":
        shape = mlpkernel.mlp_shape(problem)
        if shape is None:
            raise ValueError("kernel 'mlp' needs an MLP model (pbrf.models.mlp)")
        return shape
    return mlpkernel.mlp_shape(problem) if kernel == "auto" and mlpkernel.AUTO else None


def gnh_chunk(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    v: Tensor,
    scale: float = 1.0,
    kernel: str = "auto",
) -> Tensor:
    """``scale · Σ_i J_iᵀ H_i J_i V`` over one chunk of examples (a sum, not a mean): by explicit
    batched matrix products for an MLP when :func:`gnh_kernel` says so, else
    :func:`autodiff_gnh_chunk`. ``scale`` (e.g. 1/|B|) multiplies the output-space products
    ``H_i J_i V``, sparing a pass over the ``(k, d)`` result."""
    shape = gnh_kernel(problem, kernel)
    if shape is not None and v.dim() == 2 and theta.dim() == 1:
        with torch.no_grad():
            return mlpkernel.gnh_chunk(shape, problem.loss, theta, x, t, v, scale)
    return autodiff_gnh_chunk(problem, theta, x, t, v, scale)


def autodiff_gnh_chunk(
    problem: Problem, theta: Tensor, x: Tensor, t: Tensor, v: Tensor, scale: float = 1.0
) -> Tensor:
    """``scale · Σ_i J_iᵀ H_i J_i V`` over one chunk of examples by ``jvp``/``vjp`` (any network).

    One forward pass at θ is shared by the k products (``vmap`` over the vectors only). When the
    problem has ``f_params``, the products run on one tensor per parameter and the k results
    are written into one ``(k, d)`` array (no flat gather of k parameter-sized gradients)."""

    def hvp(ys: Tensor, dyi: Tensor) -> Tensor:
        out = problem.loss.output_hvp(ys, t, dyi)
        return out * scale if scale != 1.0 else out

    if problem.f_params is None or problem.spec is None:
        ys, pullback = vjp(lambda th: problem.f(th, x), theta)
        dy = vmap(lambda vi: jvp(lambda th: problem.f(th, x), (theta,), (vi,))[1])(v)
        hdy = vmap(lambda dyi: hvp(ys, dyi))(dy)
        return vmap(lambda c: pullback(c)[0])(hdy)
    spec, f_params = problem.spec, problem.f_params

    def f(params: dict[str, Tensor]) -> Tensor:
        return f_params(params, x)

    params = spec.unflatten(theta)
    ys, pullback = vjp(f, params)
    dy = vmap(lambda vi: jvp(f, (params,), (vi,))[1])(spec.unflatten(v))
    hdy = vmap(lambda dyi: hvp(ys, dyi))(dy)
    grads = vmap(lambda c: pullback(c)[0])(hdy)
    out = torch.empty_like(v)
    for name, piece in spec.unflatten(out).items():
        piece.copy_(grads[name])
    return out


def gnh_product(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    v: Tensor,
    chunk_size: int | None = None,
    kernel: str = "auto",
) -> Tensor:
    """``G V`` for ``V (k, d)`` over the examples ``(x, t)``; ``G`` includes the weight decay.
    ``kernel``: see :func:`gnh_kernel`."""
    n = x.shape[0]
    out = problem.weight_decay * v if problem.weight_decay else None
    for sl in _chunks(n, chunk_size):
        part = gnh_chunk(problem, theta, x[sl], t[sl], v, kernel=kernel).div_(n)
        out = part if out is None else out.add_(part)
    return out


def hessian_product(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    v: Tensor,
    chunk_size: int | None = None,
    kernel: str = "auto",
) -> Tensor:
    """``∇²J(θ) V`` for ``V (k, d)`` (the "without GNH" variant of Tables 4 and 7), always by
    forward-over-reverse autodiff (``kernel`` is accepted for a uniform signature)."""
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
    kernel: str = "auto",
) -> Matvec:
    """Deterministic matvec of the GNH (``kind="gnh"``) or Hessian (``"hessian"``) on ``(x, t)``."""
    product = _product(kind)
    return lambda v: product(problem, theta, x, t, v, chunk_size, kernel)


def sampled_matvec(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    batch_size: int,
    generator: torch.Generator,
    kind: str = "gnh",
    kernel: str = "auto",
) -> Matvec:
    """Stochastic matvec: every call draws a fresh minibatch of ``batch_size`` examples
    (without replacement, from ``generator``) and multiplies by its curvature — the
    ``∇²J^{(r,t)}`` of Eq. 52. ``kernel``: see :func:`gnh_kernel`."""
    product = _product(kind)
    n = x.shape[0]

    def matvec(v: Tensor) -> Tensor:
        idx = torch.randperm(n, generator=generator)[:batch_size].to(x.device)
        return product(problem, theta, x[idx], t[idx], v, None, kernel)

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


# Kernel blocks: (tangents × examples) pairs per batched jvp. Measured on a 2-layer MLP on a CPU:
# ~10⁴ pairs keep the jvp's intermediates cache-sized; far larger blocks run 2× slower.
_KERNEL_ROWS = 64
_KERNEL_PAIRS = 9216
_GRAM_ROWS = 512  # factor rows per GEMM block of the dense G


def output_hessian_factor(
    loss: OutputLoss, ys: Tensor, t: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Symmetric PSD square-root factor of the output Hessians: ``B (n, r, m)`` with
    ``H_i = B_iᵀ B_i`` (``m`` = outputs per example, flattened), from an eigendecomposition.

    ``r ≤ m`` is the largest numerical rank over the examples: softmax cross-entropy's
    ``diag(p) − ppᵀ`` is singular (its null vector is ``1``), so ``r = C − 1`` there. Eigenvalues
    below ``m·eps·max|eig|`` count as zero; negative ones (a loss not convex in ``y``) are clipped
    and reported as ``min_eigenvalue``. Memory: ``n·m²`` entries.
    """
    n = ys.shape[0]
    m = math.prod(ys.shape[1:])
    eye = torch.eye(m, dtype=ys.dtype, device=ys.device)
    cols = [
        loss.output_hvp(ys, t, eye[j].reshape(ys.shape[1:]).expand_as(ys).contiguous()).reshape(
            n, m
        )
        for j in range(m)
    ]
    h = torch.stack(cols, dim=-1)
    s, u = torch.linalg.eigh(0.5 * (h + h.transpose(-1, -2)))  # ascending
    scale = s.abs().amax().clamp_min(torch.finfo(s.dtype).tiny)
    tol = m * torch.finfo(s.dtype).eps * scale
    rank = max(1, int((s > tol).sum(-1).max()))
    top_s, top_u = s[:, m - rank :], u[:, :, m - rank :]
    factor = top_s.clamp_min(0).sqrt()[:, :, None] * top_u.transpose(-1, -2)
    return factor, {"rank": rank, "min_eigenvalue": float(s.min()), "max_eigenvalue": float(scale)}


class LinearizedGNH:
    """``G = (1/N) Σ_i J_iᵀ H_i J_i + wI`` at θ on ``(x, t)`` (Eq. 6, 49), linearized once.

    Construction runs the forward pass once and keeps the outputs and, with ``cache=True``, the
    reverse-mode pullbacks of every chunk of ``chunk_size`` examples; a product then costs one
    batched jvp (which re-runs a single unbatched forward) and one batched vjp of the stored
    pullbacks. Stored pullbacks hold the activations of all N examples, so ``cache`` defaults to
    ``chunk_size is None`` (an unchunked product holds them anyway); with chunks and
    ``cache=False`` each product rebuilds one chunk's pullback at a time, bounding memory as
    :func:`gnh_product` does. The factor methods (``rank``, :meth:`factor`, :meth:`factor_t`,
    :meth:`factor_rows`, :meth:`kernel`, :meth:`gram`) compute ``H_i^{1/2}`` on first use.
    """

    def __init__(
        self,
        problem: Problem,
        theta: Tensor,
        x: Tensor,
        t: Tensor,
        chunk_size: int | None = None,
        cache: bool | None = None,
    ) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1 or None, got {chunk_size}")
        self.problem, self.theta, self.x, self.t = problem, theta, x, t
        self.n, self.d = x.shape[0], theta.numel()
        self.weight_decay = problem.weight_decay
        self.chunk_size = chunk_size
        self.cache = chunk_size is None if cache is None else cache
        self._chunks = []
        for sl in _chunks(self.n, chunk_size):
            xc = x[sl]
            if self.cache:
                ys, pullback = vjp(lambda th, xc=xc: problem.f(th, xc), theta)
            else:
                with torch.no_grad():
                    ys, pullback = problem.f(theta, xc), None
            self._chunks.append((sl, xc, t[sl], ys.detach(), pullback))
        self.out_shape = self._chunks[0][3].shape[1:]
        self._factor: Tensor | None = None
        self.factor_info: dict[str, float] = {}

    # -- products ---------------------------------------------------------------------------
    def _jvp(self, xc: Tensor, v: Tensor) -> Tensor:
        f, theta = self.problem.f, self.theta
        return vmap(lambda vi: jvp(lambda th: f(th, xc), (theta,), (vi,))[1])(v)

    def _vjp(self, xc: Tensor, pullback: Pullback | None, cot: Tensor) -> Tensor:
        if pullback is None:
            _, pullback = vjp(lambda th: self.problem.f(th, xc), self.theta)
        return vmap(lambda c: pullback(c)[0])(cot)

    def matvec(self, v: Tensor) -> Tensor:
        """``G V`` for ``V (k, d)`` (undamped; includes ``wI``)."""
        loss = self.problem.loss
        out = self.weight_decay * v
        for _, xc, tc, ys, pullback in self._chunks:
            dy = self._jvp(xc, v)
            hdy = vmap(lambda a, ys=ys, tc=tc: loss.output_hvp(ys, tc, a))(dy)
            out = out + self._vjp(xc, pullback, hdy) / self.n
        return out

    __call__ = matvec

    # -- the Gauss-Newton factor A (rows H_i^{1/2} J_i) ------------------------------------------
    @property
    def output_factor(self) -> Tensor:
        """``B (N, r, m)`` with ``H_i = B_iᵀ B_i`` (see :func:`output_hessian_factor`)."""
        if self._factor is None:
            ys = torch.cat([c[3] for c in self._chunks])
            self._factor, self.factor_info = output_hessian_factor(self.problem.loss, ys, self.t)
        return self._factor

    @property
    def rank(self) -> int:
        """``r``: rows of ``A`` per example; ``A`` has ``N·r`` rows."""
        return self.output_factor.shape[1]

    def factor(self, v: Tensor) -> Tensor:
        """``A V`` for ``V (k, d)``: ``(k, N·r)``, example-major."""
        b = self.output_factor
        parts = []
        for sl, xc, _, _, _ in self._chunks:
            dy = self._jvp(xc, v).reshape(v.shape[0], xc.shape[0], -1)
            parts.append(torch.einsum("kcm,crm->kcr", dy, b[sl]).reshape(v.shape[0], -1))
        return torch.cat(parts, dim=1)

    def factor_t(self, u: Tensor) -> Tensor:
        """``Aᵀ U`` for ``U (k, N·r)``: ``(k, d)``."""
        b, r, k = self.output_factor, self.rank, u.shape[0]
        out = torch.zeros(k, self.d, dtype=u.dtype, device=u.device)
        for sl, xc, _, _, pullback in self._chunks:
            uc = u[:, sl.start * r : sl.stop * r].reshape(k, xc.shape[0], r)
            cot = torch.einsum("kcr,crm->kcm", uc, b[sl]).reshape(k, xc.shape[0], *self.out_shape)
            out = out + self._vjp(xc, pullback, cot)
        return out

    def factor_rows(self, start: int, stop: int) -> Tensor:
        """Rows ``H_i^{1/2} J_i`` of ``A`` for examples ``start:stop``: ``((stop−start)·r, d)``."""
        f, theta, shape = self.problem.f, self.theta, self.out_shape
        b = self.output_factor[start:stop].reshape(stop - start, self.rank, *shape)

        def one(xi: Tensor, bi: Tensor) -> Tensor:
            _, pullback = vjp(lambda th: f(th, xi[None])[0], theta)
            return vmap(lambda c: pullback(c)[0])(bi)

        return vmap(one)(self.x[start:stop], b).reshape(-1, self.d)

    def kernel(self, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """Lower triangle of ``K = AAᵀ``, ``(N·r, N·r)`` (blocks above the diagonal are left 0).

        Column block by column block: the block's rows of ``A`` (per-example vjps), then one
        batched jvp of them over each later chunk of examples. Memory: the ``(N·r)²`` kernel plus
        about ``_KERNEL_PAIRS`` tangent-example pairs of activations and a ``(block·r, d)`` block.
        """
        n, r = self.n, self.rank
        rows = min(n, self.chunk_size or _KERNEL_ROWS)
        cols = max(1, _KERNEL_PAIRS // (rows * r))
        b = self.output_factor
        k = torch.zeros(n * r, n * r, dtype=self.theta.dtype, device=self.theta.device)
        starts = list(range(0, n, cols))
        for step, j0 in enumerate(starts, 1):
            j1 = min(j0 + cols, n)
            tangents = self.factor_rows(j0, j1)
            for i0 in range(j0, n, rows):
                i1 = min(i0 + rows, n)
                dy = self._jvp(self.x[i0:i1], tangents).reshape(tangents.shape[0], i1 - i0, -1)
                blk = torch.einsum("kim,irm->irk", dy, b[i0:i1]).reshape((i1 - i0) * r, -1)
                k[i0 * r : i1 * r, j0 * r : j1 * r] = blk
            if progress is not None:
                progress(step, len(starts))
        return k

    def gram(self, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """The dense ``G = AᵀA/N + wI``, ``(d, d)``, accumulated from blocks of rows of ``A``."""
        g = torch.zeros(self.d, self.d, dtype=self.theta.dtype, device=self.theta.device)
        step = max(1, _GRAM_ROWS // self.rank)
        starts = list(range(0, self.n, step))
        for i, s in enumerate(starts, 1):
            rows = self.factor_rows(s, min(s + step, self.n))
            g.addmm_(rows.T, rows, alpha=1.0 / self.n)
            if progress is not None:
                progress(i, len(starts))
        g.diagonal().add_(self.weight_decay)
        return g
