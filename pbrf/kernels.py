"""Fast training steps for M stacked models: the same objectives as :mod:`pbrf.objectives`,
computed with less work, and the reference ``vmap(grad_and_value(objective))`` kept beside them.

A *stepper* maps stacked displacements ``δ (M, d)``, one shared :class:`Batch`, the removal
weights ``w (M, b)`` and the removed examples ``(M, k, ...)`` to the gradients ``(M, d)`` and
objective values ``(M,)`` of all M models. Kernels:

* ``reference``: ``vmap(grad_and_value(objective))`` of the Table-1 objective as written in
  :mod:`pbrf.objectives` (the definition every fast path is tested against).
* ``vmap``: the fast objectives below, vmapped over the models.
* ``loop``: the fast objectives, one model after another with plain autograd. Each model's
  matrix products then run at full single-model size; for large models this beats ``vmap``.
* ``mlp``: an MLP's forward and backward written out as batched matrix products
  (:class:`MLPStepper`, :mod:`pbrf.mlpkernel`), every variant.
* ``auto``, chosen by ``benchmarks/bench_row.py`` measurements on a CPU (one thread): with
  ``pbrf.mlpkernel.AUTO`` (off by default, see there), for an MLP ``mlp`` (``concrete-mlp``: 1.2–2.9× ``vmap``/``loop`` for every variant; ``mnist-mlp``:
  equal for base training and the linearized PBRF, 1.3× for the PBRFs), except that the
  downweighted variants (cold, warm, proximal) of a large model
  (``d × batch ≥ LOOP_MIN_WORK``) ``loop`` (``mnist-mlp`` warm: 1.1× ``mlp``). Other models:
  ``loop`` for a single model (base training), a large one or a convolutional one, else ``vmap``
  (looping wins for ``mnist-mlp``, d·b = 2.4e8, and for LeNet's convolutions, and loses for
  ``concrete-mlp``, d·b = 2.3e6).

What the fast objectives skip or reorder (mathematically the same objective):

* the regularizer ``(w/2)‖θ‖²`` is not computed when ``w = 0`` (Problem, Eq. 1), and otherwise
  enters once as ``r(θ)·Σ_i w_i/|B|`` instead of once per example;
* the PBRF (Eq. 8) runs one forward pass over the batch and the removed examples together;
* the linearized PBRF (Eq. 11) is quadratic in δ, so its gradient is written out:
  ``(1/|B|) Σ_i J_iᵀ H_i J_i δ − ε c + (λ + w) δ`` with ``c = Σ_z ∇_θ ℓ_z(θˢ)`` fixed for the
  run. The Gauss-Newton products of all M models share one forward pass at θˢ
  (:func:`pbrf.curvature.gnh_chunk`), and ``½ δᵀ(J ᵀH J δ)/|B|`` is the quadratic term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, jvp, vmap

from pbrf import mlpkernel
from pbrf.curvature import gnh_chunk
from pbrf.objectives import Batch
from pbrf.params import ParamSpec
from pbrf.problem import Problem

KERNELS = ("reference", "vmap", "loop", "mlp", "auto")
PROXIMAL_TERMS = frozenset({"proximal", "pbrf", "pbrf_paper"})  # objectives reading δ itself
DOWNWEIGHTED = frozenset({"cold", "warm", "two_stage", "proximal"})  # Eq. 2 objectives
LOOP_MIN_WORK = 50_000_000  # d × batch from which looping beats vmap (bench_row, CPU)

# objective(δ (d,), batch, weights (b,), removed_x (k, ...), removed_t (k, ...)) -> scalar
Objective = Callable[..., Tensor]
Forward = Callable[[Tensor], Tensor]


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    return kernel


def choose_kernel(
    kernel: str,
    d: int,
    batch_size: int | None,
    n: int,
    models: int = 2,
    problem: Problem | None = None,
    variant: str | None = None,
) -> str:
    """``kernel``, with ``auto`` resolved by measurement (module docstring): for an MLP
    ``problem``, ``mlp`` except that the downweighted variants of large models loop; otherwise by
    the size of one model's step and the number of models."""
    if check_kernel(kernel) != "auto":
        if kernel == "mlp" and (problem is None or mlpkernel.mlp_shape(problem) is None):
            raise ValueError("kernel 'mlp' needs an MLP model (pbrf.models.mlp)")
        return kernel
    large = d * (batch_size or n) >= LOOP_MIN_WORK or has_conv(problem)
    if mlpkernel.AUTO and problem is not None and mlpkernel.mlp_shape(problem) is not None:
        return "loop" if large and models > 1 and variant in DOWNWEIGHTED else "mlp"
    return "loop" if models == 1 or large else "vmap"


def has_conv(problem: Problem | None) -> bool:
    """Whether the network has a parameter of more than two dimensions (a convolution's
    kernel): ``vmap`` turns M models' convolutions into one grouped convolution, which a CPU
    runs 1.5–1.8× slower than a loop of M plain ones (``mnist-lenet``, bench_row)."""
    spec = None if problem is None else problem.spec
    return spec is not None and any(len(s) > 2 for s in spec.shapes)


def data_losses(problem: Problem, theta: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """``L(f(θ, x_i), t_i)`` per example, without the regularizer."""
    return problem.loss(problem.f(theta, x), t)


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot products ``(M, d), (M, d) → (M,)`` without an ``(M, d)`` temporary."""
    return torch.bmm(a[:, None, :], b[:, :, None]).flatten()


def _sq(v: Tensor) -> Tensor:
    return (v * v).sum()


def fast_objective(
    variant: str, problem: Problem, anchor: Tensor, epsilon: float, damping: float
) -> Objective:
    """The objective of δ for ``variant`` (cold, warm, two_stage, proximal, pbrf, pbrf_paper),
    equal to :func:`pbrf.responses.variant_objective`'s up to rounding. An optional last
    argument ``th`` = ``anchor + δ`` (computed by the caller) replaces that sum, so a loop can
    reuse one buffer for it and differentiate with respect to ``th`` and δ separately; ``fwd``
    (``x ↦ f(θ, x)`` on per-tensor leaves of θ, only when ``w = 0``) replaces ``f(th, ·)``."""
    wd = problem.weight_decay

    def downweighted(
        d: Tensor,
        b: Batch,
        w: Tensor,
        rx: Tensor,
        rt: Tensor,
        th: Tensor | None = None,
        fwd: Forward | None = None,
    ) -> Tensor:
        theta = anchor + d if th is None else th
        y = problem.f(theta, b.x) if fwd is None else fwd(b.x)
        val = (w * problem.loss(y, b.t)).sum() / b.size
        if wd:
            val = val + problem.regularizer(theta) * (w.sum() / b.size)
        return val

    def proximal(
        d: Tensor,
        b: Batch,
        w: Tensor,
        rx: Tensor,
        rt: Tensor,
        th: Tensor | None = None,
        fwd: Forward | None = None,
    ) -> Tensor:
        val = downweighted(d, b, w, rx, rt, th, fwd)
        return val + 0.5 * damping * _sq(d) if damping else val

    def bregman(
        d: Tensor,
        b: Batch,
        w: Tensor,
        rx: Tensor,
        rt: Tensor,
        th: Tensor | None = None,
        fwd: Forward | None = None,
    ) -> Tensor:
        assert b.anchor_outputs is not None
        theta = anchor + d if th is None else th
        nb = b.x.shape[0]
        xs = torch.cat([b.x, rx], dim=0)
        y = problem.f(theta, xs) if fwd is None else fwd(xs)
        val = problem.loss.bregman(y[:nb], b.anchor_outputs, b.t).sum() / b.size
        removed = problem.loss(y[nb:], rt).sum()
        if wd:
            removed = removed + rx.shape[0] * problem.regularizer(theta)
        val = val - epsilon * removed
        return val + 0.5 * (damping + wd) * _sq(d) if damping + wd else val

    table = {
        "cold": downweighted,
        "warm": downweighted,
        "two_stage": downweighted,
        "proximal": proximal,
        "pbrf": bregman,
        "pbrf_paper": bregman,
    }
    if variant not in table:
        raise ValueError(f"no fast objective for variant {variant!r}")
    return table[variant]


@dataclass
class Stepper:
    """Gradients and values of M stacked models (``grad_and_value``) and values alone."""

    one: Objective  # one model's objective of δ (d,)
    kernel: str  # "reference", "vmap" or "loop"
    anchor: Tensor | None = None  # loop only: θ = anchor + δ goes through a reused buffer
    uses_delta: bool = True  # whether the objective reads δ besides θ (proximal terms)
    per_tensor: ParamSpec | None = None  # loop: differentiate per parameter tensor (w = 0)
    problem_f_params: Callable | None = None  # Problem.f_params, with per_tensor
    _buf: Tensor | None = field(default=None, init=False, repr=False)
    _grads: Tensor | None = field(default=None, init=False, repr=False)
    _gv: Callable | None = field(default=None, init=False, repr=False)
    _val: Callable | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._gv = vmap(grad_and_value(self.one), in_dims=(0, None, 0, 0, 0))
        self._val = vmap(self.one, in_dims=(0, None, 0, 0, 0))
        self._shared_val = vmap(self.one, in_dims=(None, None, 0, 0, 0))

    def grad_and_value(
        self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor
    ) -> tuple[Tensor, Tensor]:
        if self.kernel != "loop":
            return self._gv(theta, b, w, rx, rt)
        if self._grads is None or self._grads.shape != theta.shape:
            self._grads = torch.empty_like(theta)  # reused: the caller consumes it each step
        grads = self._grads
        values = theta.new_empty(theta.shape[0])
        for m in range(theta.shape[0]):
            with torch.enable_grad():
                v = self._loop_one(theta[m], grads[m], b, w[m], rx[m], rt[m])
            values[m] = v.detach()
        return grads, values

    def _loop_one(
        self, delta: Tensor, out: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor
    ) -> Tensor:
        """One model's objective; its gradient is written into ``out``. With an anchor,
        θ = anchor + δ goes into a reused buffer; with ``per_tensor``, the network is called on
        one leaf per parameter tensor, whose gradients are copied straight into ``out``."""
        if self.anchor is None:
            d = delta.detach().requires_grad_(True)
            v = self.one(d, b, w, rx, rt)
            out.copy_(torch.autograd.grad(v, d)[0])
            return v
        if self._buf is None:
            self._buf = torch.empty_like(self.anchor)
        d = delta.detach().requires_grad_(self.uses_delta)
        th = torch.add(self.anchor, delta.detach(), out=self._buf).detach()
        fwd, inputs = None, []
        if self.per_tensor is not None:
            leaves = {k: p.requires_grad_(True) for k, p in self.per_tensor.unflatten(th).items()}
            f_params = self.problem_f_params
            assert f_params is not None

            def fwd(x: Tensor) -> Tensor:
                return f_params(leaves, x)

            inputs = list(leaves.values())
            outs = list(self.per_tensor.unflatten(out).values())
        else:
            th.requires_grad_(True)
            inputs, outs = [th], [out]
        if self.uses_delta:
            inputs.append(d)
        v = self.one(d, b, w, rx, rt, th, fwd)
        grads = torch.autograd.grad(v, inputs, allow_unused=True)
        for o, g in zip(outs, grads, strict=False):
            o.copy_(g)
        if self.uses_delta and grads[-1] is not None:
            out.add_(grads[-1])
        return v

    def value(self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        with torch.no_grad():
            if self.kernel != "loop":
                return self._val(theta, b, w, rx, rt)
            return torch.stack(
                [self.one(theta[m], b, w[m], rx[m], rt[m]) for m in range(theta.shape[0])]
            )

    def shared_value(self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        """Values of M models that all sit at the same ``theta (d,)``: one forward pass."""
        with torch.no_grad():
            return self._shared_val(theta, b, w, rx, rt)


@dataclass
class LinearizedStepper:
    """The linearized PBRF (Eq. 11) with its gradient written out (module docstring)."""

    problem: Problem
    anchor: Tensor  # θˢ
    epsilon: float
    damping: float
    _c: Tensor | None = field(default=None, init=False, repr=False)
    _c_key: Tensor | None = field(default=None, init=False, repr=False)
    kernel: str = "linearized"
    shape: mlpkernel.MLPShape | None = None  # an MLP: products by batched matmuls

    def _removed_grad(self, rx: Tensor, rt: Tensor) -> Tensor:
        """``c_m = Σ_{z∈S_m} ∇_θ ℓ_z(θˢ)`` ``(M, d)``, computed once per set of removals."""
        if self._c is None or self._c_key is not rx:
            p, wd = self.problem, self.problem.weight_decay

            def summed(th: Tensor, xz: Tensor, tz: Tensor) -> Tensor:
                return data_losses(p, th, xz, tz).sum()

            with torch.no_grad():
                c = vmap(grad(summed), in_dims=(None, 0, 0))(self.anchor, rx, rt)
                if wd:
                    c = c + (rx.shape[1] * wd) * self.anchor
            self._c, self._c_key = c, rx
        return self._c

    def _parts(self, theta: Tensor, b: Batch, rx: Tensor, rt: Tensor) -> tuple[Tensor, Tensor]:
        """``(G_B δ, c)`` with ``G_B = (1/|B|) Σ_i J_iᵀ H_i J_i`` (the 1/|B| enters the small
        output-space products, not the ``(M, d)`` result)."""
        scale = 1.0 / b.size
        with torch.no_grad():
            if self.shape is not None:
                loss = self.problem.loss
                gq = mlpkernel.gnh_chunk(self.shape, loss, self.anchor, b.x, b.t, theta, scale)
            else:
                gq = gnh_chunk(self.problem, self.anchor, b.x, b.t, theta, scale)
        return gq, self._removed_grad(rx, rt)

    def _values(self, theta: Tensor, quad: Tensor, c: Tensor) -> Tensor:
        prox = 0.5 * (self.damping + self.problem.weight_decay) * _rowdot(theta, theta)
        return quad - self.epsilon * _rowdot(c, theta) + prox

    def grad_and_value(
        self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``g = G_B δ − ε c + λ δ`` and the value ``½ δ·G_B δ − ε c·δ + ½ λ δ·δ``, computed as
        ``½ δ·g − ½ ε c·δ`` (two row products over ``(M, d)`` instead of three)."""
        gq, c = self._parts(theta, b, rx, rt)
        lam = self.damping + self.problem.weight_decay
        grads = gq.sub_(c, alpha=self.epsilon)
        if lam:
            grads = grads.add_(theta, alpha=lam)
        values = 0.5 * (_rowdot(theta, grads) - self.epsilon * _rowdot(c, theta))
        return grads, values

    def _quad(self, theta: Tensor, b: Batch) -> Tensor:
        """``(1/|B|) Σ_i ½ Δy_iᵀ H_i Δy_i`` with ``Δy = J δ`` (forward products only)."""
        p = self.problem
        if self.shape is not None:
            with torch.no_grad():
                q = mlpkernel.quad_values(self.shape, p.loss, self.anchor, b.x, b.t, theta)
            return q / b.size

        def f(th: Tensor) -> Tensor:
            return p.f(th, b.x)

        with torch.no_grad():
            ys = f(self.anchor)
            dy = vmap(lambda v: jvp(f, (self.anchor,), (v,))[1])(theta)
            q = vmap(lambda d: p.loss.quadratic_bregman(d, ys, b.t).sum())(dy)
        return q / b.size

    def value(self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return self._values(theta, self._quad(theta, b), self._removed_grad(rx, rt))

    def shared_value(self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        m = rx.shape[0]
        quad = self._quad(theta[None], b).expand(m)
        return self._values(theta[None].expand(m, -1), quad, self._removed_grad(rx, rt))


def make_stepper(
    variant: str,
    problem: Problem,
    anchor: Tensor,
    epsilon: float,
    damping: float,
    kernel: str,
    reference: Objective,
) -> AnyStepper:
    """The stepper of ``variant`` for a resolved ``kernel`` (not ``auto``); ``reference`` is the
    objective of :func:`pbrf.responses.variant_objective`, used by the ``reference`` kernel."""
    if check_kernel(kernel) == "auto":
        raise ValueError("resolve kernel='auto' with choose_kernel first")
    if kernel == "reference":
        return Stepper(reference, "reference")
    shape = mlpkernel.mlp_shape(problem) if kernel == "mlp" else None
    if kernel == "mlp" and shape is None:
        raise ValueError("kernel 'mlp' needs an MLP model (pbrf.models.mlp)")
    if variant in ("linearized_pbrf", "linearized_pbrf_paper"):
        return LinearizedStepper(problem, anchor, epsilon, damping, shape=shape)
    if shape is not None:
        if variant not in ("cold", "warm", "two_stage", "proximal", "pbrf", "pbrf_paper"):
            raise ValueError(f"no fast objective for variant {variant!r}")
        return MLPStepper(variant, problem, shape, anchor, epsilon, damping)
    one = fast_objective(variant, problem, anchor, epsilon, damping)
    if kernel == "vmap":
        return Stepper(one, kernel)
    uses_delta = variant in PROXIMAL_TERMS and bool(damping + problem.weight_decay)
    per_tensor = problem.f_params is not None and problem.spec is not None
    if per_tensor and not problem.weight_decay:
        return Stepper(one, kernel, anchor, uses_delta, problem.spec, problem.f_params)
    return Stepper(one, kernel, anchor, uses_delta)


@dataclass
class MLPStepper:
    """Every variant but the linearized PBRF for an MLP, as explicit batched matrix products
    (:mod:`pbrf.mlpkernel`): the objectives of :func:`fast_objective` with hand-written
    gradients. ``θ = anchor + δ``; the returned gradient buffer is reused across calls."""

    variant: str
    problem: Problem
    shape: mlpkernel.MLPShape
    anchor: Tensor
    epsilon: float
    damping: float
    kernel: str = "mlp"
    _theta: Tensor | None = field(default=None, init=False, repr=False)
    _grads: Tensor | None = field(default=None, init=False, repr=False)

    def _objective(
        self, delta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor, grads: bool
    ) -> tuple[Tensor | None, Tensor]:
        p, sh, m = self.problem, self.shape, rx.shape[0]  # δ has M rows, or 1 (shared_value)
        wd, nb, bregman = p.weight_decay, b.x.shape[0], self.variant in ("pbrf", "pbrf_paper")
        if not grads:
            theta = self.anchor + delta
        else:
            if self._theta is None or self._theta.shape != delta.shape:
                self._theta, self._grads = torch.empty_like(delta), torch.empty_like(delta)
            theta = torch.add(self.anchor, delta, out=self._theta)
        x = b.x.reshape(nb, -1)
        rxf = rx.flatten(2)
        if bregman and grads:  # one forward pass over the batch and the removed examples
            x = torch.cat([x.expand(m, *x.shape), rxf], dim=1)
        layers = sh.split(theta)
        y, inputs = mlpkernel.forward(sh, layers, x)
        if bregman and not grads:  # batch rows at the (possibly shared) θ, then removed rows
            stacked = [(w_.expand(m, *w_.shape[1:]), b_.expand(m, -1)) for w_, b_ in layers]
            y_r = mlpkernel.forward(sh, stacked, rxf)[0]
            y = torch.cat([y.expand(m, *y.shape[1:]), y_r], dim=1)
        t = b.t.expand(y.shape[0], *b.t.shape)
        if bregman:
            t = torch.cat([t, rt.to(t.dtype)], dim=1)
        losses, g = mlpkernel.flat_loss(p.loss, y, t, grads)
        lam = self.damping if self.variant == "proximal" else 0.0
        if bregman:
            assert b.anchor_outputs is not None
            ys, rows = b.anchor_outputs, m * nb
            val = p.loss.bregman(
                y[:, :nb].reshape(rows, -1),
                ys.expand(m, *ys.shape).reshape(rows, -1),
                t[:, :nb].reshape(rows, *t.shape[2:]),
            )
            val = val.view(m, nb).sum(1) / b.size
            k = rx.shape[1]
            val = val - self.epsilon * losses[:, nb:].sum(1)
            if g is not None:  # Bregman gradient ∇L(y) − ∇L(yˢ); removed rows scaled by −ε
                g[:, :nb] -= p.loss.output_grad(ys, b.t)
                g[:, :nb] /= b.size
                g[:, nb:] *= -self.epsilon
            coef = -self.epsilon * k * wd  # ∂/∂θ of −ε k (w/2)‖θ‖²
            if wd:
                val = val - self.epsilon * k * 0.5 * wd * _rowdot(theta, theta)
            lam = self.damping + wd
        else:
            val = (w * losses).sum(1) / b.size
            if g is not None:  # the removal weights scale the output-gradient rows
                g.mul_((w / b.size).unsqueeze(-1))
            sw = w.sum(1) / b.size
            coef = wd * sw  # ∂/∂θ of r(θ)·Σw/|B|
            if wd:
                val = val + 0.5 * wd * _rowdot(theta, theta) * sw
        if lam:
            val = val + 0.5 * lam * _rowdot(delta, delta)
        if g is None:
            return None, val
        assert self._grads is not None
        out = mlpkernel.backward(sh, layers, inputs, g, self._grads)
        if wd:
            out.add_(theta * (coef if isinstance(coef, float) else coef[:, None]))
        if lam:
            out.add_(delta, alpha=lam)
        return out, val

    def grad_and_value(
        self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor
    ) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            out, val = self._objective(theta, b, w, rx, rt, True)
        assert out is not None
        return out, val

    def value(self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        with torch.no_grad():
            return self._objective(theta, b, w, rx, rt, False)[1]

    def shared_value(self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        """Values of M models at one ``theta (d,)``: the batch's forward pass runs once."""
        with torch.no_grad():
            return self._objective(theta[None], b, w, rx, rt, False)[1]


AnyStepper = Stepper | LinearizedStepper | MLPStepper
