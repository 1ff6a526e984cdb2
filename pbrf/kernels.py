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
* ``auto``: ``loop`` when one model's step is large (``d × batch ≥ LOOP_MIN_WORK``), else
  ``vmap`` (measured with ``benchmarks/bench_row.py``).

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

from pbrf.curvature import gnh_chunk
from pbrf.objectives import Batch
from pbrf.problem import Problem

KERNELS = ("reference", "vmap", "loop", "auto")
LOOP_MIN_WORK = 2_000_000  # d × batch above which one model's step fills the matmul units

# objective(δ (d,), batch, weights (b,), removed_x (k, ...), removed_t (k, ...)) -> scalar
Objective = Callable[[Tensor, Batch, Tensor, Tensor, Tensor], Tensor]


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    return kernel


def choose_kernel(kernel: str, d: int, batch_size: int | None, n: int) -> str:
    """``kernel``, with ``auto`` resolved by the size of one model's step (module docstring)."""
    if check_kernel(kernel) != "auto":
        return kernel
    return "loop" if d * (batch_size or n) >= LOOP_MIN_WORK else "vmap"


def data_losses(problem: Problem, theta: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """``L(f(θ, x_i), t_i)`` per example, without the regularizer."""
    return problem.loss(problem.f(theta, x), t)


def _sq(v: Tensor) -> Tensor:
    return (v * v).sum()


def fast_objective(
    variant: str, problem: Problem, anchor: Tensor, epsilon: float, damping: float
) -> Objective:
    """The objective of δ for ``variant`` (cold, warm, two_stage, proximal, pbrf, pbrf_paper),
    equal to :func:`pbrf.responses.variant_objective`'s up to rounding."""
    wd = problem.weight_decay

    def downweighted(d: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        theta = anchor + d
        val = (w * data_losses(problem, theta, b.x, b.t)).sum() / b.size
        if wd:
            val = val + problem.regularizer(theta) * (w.sum() / b.size)
        return val

    def proximal(d: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        val = downweighted(d, b, w, rx, rt)
        return val + 0.5 * damping * _sq(d) if damping else val

    def bregman(d: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        assert b.anchor_outputs is not None
        theta = anchor + d
        nb = b.x.shape[0]
        y = problem.f(theta, torch.cat([b.x, rx], dim=0))
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
        grads = torch.empty_like(theta)
        values = theta.new_empty(theta.shape[0])
        for m in range(theta.shape[0]):
            d = theta[m].detach().requires_grad_(True)
            with torch.enable_grad():
                v = self.one(d, b, w[m], rx[m], rt[m])
                (g,) = torch.autograd.grad(v, d)
            grads[m] = g
            values[m] = v.detach()
        return grads, values

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
        with torch.no_grad():
            gq = gnh_chunk(self.problem, self.anchor, b.x, b.t, theta) / b.size
        return gq, self._removed_grad(rx, rt)

    def _values(self, theta: Tensor, quad: Tensor, c: Tensor) -> Tensor:
        prox = 0.5 * (self.damping + self.problem.weight_decay) * (theta * theta).sum(1)
        return quad - self.epsilon * (c * theta).sum(1) + prox

    def grad_and_value(
        self, theta: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor
    ) -> tuple[Tensor, Tensor]:
        gq, c = self._parts(theta, b, rx, rt)
        values = self._values(theta, 0.5 * (theta * gq).sum(1), c)
        lam = self.damping + self.problem.weight_decay
        grads = gq.sub_(c, alpha=self.epsilon)
        if lam:
            grads = grads.add_(theta, alpha=lam)
        return grads, values

    def _quad(self, theta: Tensor, b: Batch) -> Tensor:
        """``(1/|B|) Σ_i ½ Δy_iᵀ H_i Δy_i`` with ``Δy = J δ`` (forward products only)."""
        p = self.problem

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


AnyStepper = Stepper | LinearizedStepper


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
    if variant == "linearized_pbrf":
        return LinearizedStepper(problem, anchor, epsilon, damping)
    return Stepper(fast_objective(variant, problem, anchor, epsilon, damping), kernel)
