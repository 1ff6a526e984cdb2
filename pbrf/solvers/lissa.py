"""LiSSA (Agarwal et al., 2016): a truncated Neumann series for ``(A + λI)⁻¹ V`` (Eq. 51–52).

Recursion, per repeat r and row j (``A_t`` the curvature of the t-th sampled batch)::

    h_0 = v,    h_t = v + (1 − λ/σ) h_{t−1} − A_t h_{t−1} / σ,    x_r = h_T / σ

and the estimate is the mean of ``x_r`` over R repeats. The series converges when
``σ > λ_max(A) + λ``; then ``‖h_t‖ ≤ min(t + 1, σ/λ) ‖v‖``, so an iterate far above that bound
(or a non-finite one) means divergence, reported with the scale and the eigenvalue estimate.
With σ and depth T the recursion acts like T gradient steps of size 1/σ on the damped
quadratic: it resolves curvature directions above roughly σ/T (GUIDE §4, the LiSSA horizon).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from pbrf.curvature import Matvec
from pbrf.solvers.power import top_eigenvalue


class LissaDivergenceError(FloatingPointError):
    """LiSSA's iterates blew up: the scale is below the largest eigenvalue of the curvature."""


@dataclass
class LissaResult:
    x: Tensor  # (k, d)
    scale: float
    top_eigenvalue: float | None  # the power-iteration estimate, when one was made
    depth: int
    repeats: int

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
    eigen_matvec: Matvec | None = None,
    power_iters: int = 30,
    divergence_slack: float = 4.0,
    check_every: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> LissaResult:
    """Approximate ``(A + λI)⁻¹ V`` for the rows of ``V (k, d)`` with R·T matvecs of k vectors.

    ``matvec`` is the undamped curvature (it may draw a new minibatch per call).
    ``scale="auto"`` sets ``σ = scale_factor · (λ_max + λ)`` from power iteration on
    ``eigen_matvec`` (default ``matvec``). ``progress(step, total)`` is called after each step.
    """
    if depth < 1:
        raise ValueError(f"depth must be ≥ 1, got {depth}")
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    if damping < 0:
        raise ValueError(f"damping must be ≥ 0, got {damping}")
    v2 = v if v.dim() == 2 else v[None]
    eig = None
    if scale == "auto":
        if scale_factor <= 1:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        eig = top_eigenvalue(
            eigen_matvec or matvec,
            v2.shape[-1],
            iters=power_iters,
            dtype=v2.dtype,
            device=v2.device,
        )
        scale = scale_factor * (eig + damping)
    elif isinstance(scale, str) or not scale > 0:
        raise ValueError(f"scale must be > 0 or 'auto', got {scale!r}")
    scale = float(scale)
    vnorm = v2.norm(dim=-1)
    cap = scale / damping if damping > 0 else float("inf")
    total = torch.zeros_like(v2)
    for r in range(repeats):
        h = v2.clone()
        for t in range(1, depth + 1):
            h = v2 + (1 - damping / scale) * h - matvec(h) / scale
            if t % check_every == 0 or t == depth:
                _check(
                    h, vnorm, min(t + 1, cap) * divergence_slack, scale, eig, damping, t, depth, r
                )
            if progress is not None:
                progress(r * depth + t, repeats * depth)
        total = total + h / scale
    x = total / repeats
    return LissaResult(x if v.dim() == 2 else x[0], scale, eig, depth, repeats)


def _check(
    h: Tensor,
    vnorm: Tensor,
    bound: float,
    scale: float,
    eig: float | None,
    damping: float,
    t: int,
    depth: int,
    r: int,
) -> None:
    norms = h.norm(dim=-1)
    bad = ~torch.isfinite(norms) | (norms > bound * vnorm)
    if bool(bad.any()):
        if eig is None:
            eig_txt = "not estimated (scale='auto' estimates it by power iteration)"
            hint = "increase influence.scale or set it to 'auto'"
        else:
            eig_txt = f"{eig:.4g}"
            hint = (
                "the sampled minibatch curvature exceeds the full-data estimate: raise "
                "influence.scale_factor or influence.batch_size"
            )
        raise LissaDivergenceError(
            f"LiSSA diverged at step {t} of {depth} (repeat {r}): ‖h_t‖/‖v‖ reached "
            f"{float((norms / vnorm)[bad].max()):.3g} (bound {bound:.3g}) for right-hand side(s) "
            f"{bad.nonzero().flatten().tolist()[:5]}. It used scale σ={scale:.4g} with damping "
            f"λ={damping:g}; the top-eigenvalue estimate of the curvature is {eig_txt}. "
            f"σ must exceed λ_max + λ: {hint}."
        )
