"""LiSSA (Agarwal et al., 2016): a truncated Neumann series for ``(A + λI)⁻¹ V`` (Eq. 51–52).

Recursion, per repeat r and row j (``A_t`` the curvature of the t-th sampled batch)::

    h_0 = v,    h_t = v + (1 − λ/σ) h_{t−1} − A_t h_{t−1} / σ,    x_r = h_T / σ

and the estimate is the mean of ``x_r`` over R repeats. For a PSD curvature the series
converges exactly when every factor ``1 − (a + λ)/σ`` of an eigenvalue ``a`` lies in (−1, 1),
i.e. ``σ > (λ_max(A) + λ)/2``; with ``σ > λ_max + λ`` every factor is in [0, 1) (no
overshoot) and ``‖h_t‖ ≤ min(t + 1, σ/λ) ‖v‖``, so an iterate far above that bound (or a
non-finite one) means divergence and raises :class:`LissaDivergenceError`.
With scale σ and depth T the recursion acts like T gradient-descent steps of size 1/σ on the
damped quadratic of Eq. 50: it resolves curvature directions above roughly σ/T, and ``T/σ`` (the
*horizon*) is the total step length it takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from pbrf.curvature import Matvec
from pbrf.solvers.errors import (
    LissaDivergenceError,
    LissaGridDivergenceError,
    NonPositiveScaleError,
)
from pbrf.solvers.power import EigenEstimate, power_iteration

__all__ = ["LissaDivergenceError", "LissaResult", "ScaleTrial", "lissa", "lissa_grid"]


@dataclass(frozen=True)
class ScaleTrial:
    """One σ tried by :func:`lissa_grid`: diverged at ``step`` of ``repeat`` (``None``: the
    series stayed bounded over all repeats, and σ was chosen)."""

    scale: float
    step: int | None = None
    repeat: int | None = None
    ratio: float | None = None

    def describe(self) -> str:
        if self.step is None:
            return f"σ={self.scale:g}: bounded (chosen)"
        return (
            f"σ={self.scale:g}: diverged at step {self.step} of repeat {self.repeat} "
            f"(‖h_t‖/‖v‖ = {self.ratio:.3g})"
        )


@dataclass(frozen=True)
class LissaResult:
    x: Tensor  # (k, d), or (d,) for a single right-hand side
    scale: float  # σ
    top_eigenvalue: float | None  # λ_max used for (or known alongside) σ; None if unknown
    depth: int
    repeats: int
    eigen: EigenEstimate | None  # the power iteration, when this call ran one
    converged: bool  # finished without divergence and with no warning
    warnings: tuple[str, ...]
    trials: tuple[ScaleTrial, ...] = ()  # scale='grid': every σ tried, the chosen one last

    @property
    def horizon(self) -> float:
        """``T/σ``: LiSSA behaves like gradient descent with total step ``T/σ``."""
        return self.depth / self.scale


def lissa(
    matvec: Matvec,
    v: Tensor,
    *,
    depth: int,
    scale: float | Literal["auto"],
    damping: float,
    repeats: int = 1,
    scale_factor: float = 1.5,
    top_eigenvalue: float | None = None,
    eigen_matvec: Matvec | None = None,
    power_iters: int = 30,
    divergence_slack: float = 4.0,
    check_every: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> LissaResult:
    """Approximate ``(A + λI)⁻¹ V`` for the rows of ``V (k, d)`` with R·T matvecs of k vectors.

    ``matvec`` is the undamped curvature (it may draw a new minibatch per call, Eq. 52).
    ``scale="auto"`` sets ``σ = scale_factor · (λ_max + λ)`` with ``λ_max = top_eigenvalue`` when
    given, else from power iteration on ``eigen_matvec`` (default ``matvec``).
    ``progress(step, total)`` is called after each step. The divergence test reads the norms of
    ``check_every`` steps at a time (one host synchronisation per block): the result, and the
    step, ratio and rows a :class:`LissaDivergenceError` names, equal a per-step test's; only up
    to ``check_every − 1`` further steps may run before the error is raised.
    """
    if depth < 1:
        raise ValueError(f"depth must be ≥ 1, got {depth}")
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    if not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite number ≥ 0, got {damping}")
    if scale != "auto" and (isinstance(scale, str) or not (math.isfinite(scale) and scale > 0)):
        raise ValueError(f"scale must be a finite number > 0 or 'auto', got {scale!r}")
    if scale == "auto" and not (math.isfinite(scale_factor) and scale_factor > 1):
        raise ValueError(f"scale_factor must be a finite number > 1, got {scale_factor}")
    if top_eigenvalue is not None and not math.isfinite(top_eigenvalue):
        raise ValueError(f"top_eigenvalue must be finite, got {top_eigenvalue}")
    if power_iters < 1:
        raise ValueError(f"power_iters must be ≥ 1, got {power_iters}")
    if check_every < 1:
        raise ValueError(f"check_every must be ≥ 1, got {check_every}")
    if v.dim() not in (1, 2) or v.shape[-1] == 0:
        raise ValueError(f"v must have shape (d,) or (k, d) with d ≥ 1, got {tuple(v.shape)}")
    v2 = v if v.dim() == 2 else v[None]
    warnings: list[str] = []
    eigen = None
    eig = top_eigenvalue
    if scale == "auto" and eig is None:
        eigen = power_iteration(
            eigen_matvec or matvec, v2.shape[-1], iters=power_iters, dtype=v2.dtype,
            device=v2.device,
        )  # fmt: skip
        eig = eigen.value
        if not eigen.converged:
            warnings.append(
                f"power iteration did not converge in {eigen.iterations} iteration(s) "
                f"(λ_max estimate {eig:.4g}); σ = {scale_factor:g} · (λ_max + λ) may be too small"
            )
    if scale == "auto":
        assert eig is not None
        if not eig + damping > 0:
            raise NonPositiveScaleError(
                top_eigenvalue=eig, damping=damping, scale_factor=scale_factor
            )
        sigma = scale_factor * (eig + damping)
    else:
        sigma = float(scale)
        top = None if eig is None else eig + damping
        if top is not None and sigma <= top / 2:
            warnings.append(
                f"scale σ = {sigma:.4g} ≤ (λ_max + λ)/2 = {top / 2:.4g}: the series diverges "
                "as the depth grows"
            )
        elif top is not None and sigma <= top:
            warnings.append(
                f"scale σ = {sigma:.4g} ≤ λ_max + λ = {top:.4g}: the series converges, but in "
                f"the top curvature directions each step overshoots (factor "
                f"{1 - top / sigma:.3g} per step instead of one in [0, 1))"
            )
    vnorm = v2.norm(dim=-1)
    safe = torch.where(vnorm > 0, vnorm, 1.0)
    cap = sigma / damping if damping > 0 else math.inf
    total = torch.zeros_like(v2)
    block = torch.empty(check_every, v2.shape[0], dtype=v2.real.dtype, device=v2.device)
    check = _Check(safe, cap, divergence_slack, depth, sigma, damping, eig)
    for r in range(repeats):
        h = v2.clone()
        filled = 0
        for t in range(1, depth + 1):
            # h ← v + (1 − λ/σ) h − A h / σ, in place (same operations and order)
            ah = matvec(h) / sigma  # before h changes: a matvec may return its input
            h = h.mul_(1 - damping / sigma).add_(v2).sub_(ah)
            torch.linalg.vector_norm(h, dim=-1, out=block[filled])
            filled += 1
            if filled == check_every or t == depth:
                check(block[:filled], t - filled + 1, r)
                filled = 0
            if progress is not None:
                progress(r * depth + t, repeats * depth)
        total += h / sigma
    x = total / repeats
    return LissaResult(
        x if v.dim() == 2 else x[0],
        sigma,
        eig,
        depth,
        repeats,
        eigen,
        not warnings,
        tuple(warnings),
    )


def lissa_grid(
    make_matvec: Callable[[], Matvec],
    v: Tensor,
    *,
    grid: Sequence[float],
    depth: int,
    damping: float,
    repeats: int = 1,
    top_eigenvalue: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LissaResult:
    """Appendix E.3's procedure: LiSSA with the smallest σ of ``grid`` whose series does not
    diverge (:class:`LissaDivergenceError`). The smallest bounded σ is the longest horizon T/σ,
    the closest to the exact inverse. ``make_matvec()`` gives each σ a fresh curvature (the
    same minibatch draws), so the result equals :func:`lissa` run at the chosen σ alone; a
    diverging σ costs only the steps up to its detection. Raises
    :class:`LissaGridDivergenceError` when every σ diverges."""
    scales = sorted(float(g) for g in grid)
    if not scales or not all(math.isfinite(g) and g > 0 for g in scales):
        raise ValueError(f"grid must hold finite numbers > 0, got {list(grid)}")
    trials: list[ScaleTrial] = []
    last: LissaDivergenceError | None = None
    for sigma in scales:
        try:
            res = lissa(
                make_matvec(), v, depth=depth, scale=sigma, damping=damping, repeats=repeats,
                top_eigenvalue=top_eigenvalue, progress=progress,
            )  # fmt: skip
        except LissaDivergenceError as exc:
            trials.append(ScaleTrial(sigma, exc.step, exc.repeat, exc.ratio))
            last = exc
            continue
        return replace(res, trials=(*trials, ScaleTrial(sigma)))
    assert last is not None
    raise LissaGridDivergenceError(grid=tuple(scales), **last.fields()) from last


@dataclass(frozen=True)
class _Check:
    """The divergence test of the module docstring over a block of consecutive steps: one host
    synchronisation per block, yet the error names the first failing step exactly, with the
    values a per-step test would report (same ratios, bounds rounded to the same dtype)."""

    safe: Tensor  # ‖v‖ per row, 1 where v = 0
    cap: float  # σ/λ
    slack: float
    depth: int
    scale: float
    damping: float
    top_eigenvalue: float | None

    def __call__(self, norms: Tensor, first: int, repeat: int) -> None:
        ratio = norms / self.safe
        bounds = [min(s + 1, self.cap) * self.slack for s in range(first, first + len(norms))]
        limit = torch.tensor(bounds, dtype=ratio.dtype, device=ratio.device)[:, None]
        bad = ~torch.isfinite(ratio) | (ratio > limit)
        if not bool(bad.any()):
            return
        i = int(bad.any(dim=1).nonzero()[0])
        raise LissaDivergenceError(
            step=first + i,
            depth=self.depth,
            repeat=repeat,
            ratio=float(ratio[i][bad[i]].max()),
            bound=bounds[i],
            scale=self.scale,
            damping=self.damping,
            top_eigenvalue=self.top_eigenvalue,
            rhs=tuple(bad[i].nonzero().flatten().tolist()),
        )
