"""Mislabelled-example detection by self-influence (Appendix F.3, Figure 6).

A stated fraction of the training labels is replaced by a *different* class drawn uniformly
(:func:`pbrf.data.corrupt.corrupt_labels`, seeded); a network is trained on the corrupted set, and every training
example z is scored by its self-influence — how much removing z would raise z's own loss:

* influence:  ``s_IF(z) = ε g_zᵀ (C + λI)⁻¹ g_z`` (Eq. 10 with the test gradient replaced by
  g_z), for all N examples (:func:`self_influence_scores`);
* PBRF:       ``s_PBRF(z) = ℓ_z(θˢ + Δ_z) − ℓ_z(θˢ)`` with Δ_z the optimum of the PBRF (Eq. 8)
  that removes z — one PBRF per training example, trained as vectorized runs
  (:func:`own_loss_change` evaluates the difference).

Inspecting examples in decreasing score order, :func:`detection_curve` gives the fraction of the
corrupted examples found after inspecting each fraction of the data; its area
(:func:`detection_auc`) summarizes the curve. A random inspection order finds, in expectation,
the inspected fraction itself; :func:`random_found_interval` and :func:`random_auc` give that
baseline's exact mean and its spread in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap

from pbrf.gradients import removal_gradients
from pbrf.influence import inverse_curvature_product
from pbrf.problem import Problem
from pbrf.solvers import SolverSettings

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- corruption


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class SelfInfluence:
    """Self-influence of every training example and how far to trust the solves."""

    scores: Tensor  # (N,) ε g_zᵀ (C + λI)⁻¹ g_z, float64
    converged: bool
    warnings: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)  # the last chunk's solver record


def self_influence_scores(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    *,
    damping: float,
    solver: SolverSettings,
    curvature: str = "gnh",
    chunk: int | None = None,
    progress: Progress | None = None,
) -> SelfInfluence:
    """``ε g_zᵀ (C + λI)⁻¹ g_z`` for every training example z of ``(x, t)``, ε = 1/N.

    The N gradients are solved ``chunk`` at a time (``None``: all at once, one factorization for
    the exact solver, which otherwise rebuilds its matrix per chunk); memory ≈ 3 × chunk × d
    floats besides the solver's own.
    """
    n = x.shape[0]
    eps = 1.0 / n
    size = n if chunk is None else chunk
    starts = list(range(0, n, size))
    scores = torch.empty(n, dtype=torch.float64)
    warnings: list[str] = []
    converged, info = True, {}
    for i, s in enumerate(starts, 1):
        rows = torch.arange(s, min(s + size, n), device=x.device)
        g = removal_gradients(problem, theta, x[rows][:, None], t[rows][:, None])
        res = inverse_curvature_product(
            problem, theta, x, t, g, damping=damping, solver=solver, curvature=curvature
        )
        q = res.x.to(torch.float64)
        scores[s : s + rows.numel()] = (eps * (g.to(torch.float64) * q).sum(-1)).cpu()
        converged = converged and res.converged
        warnings += [w for w in res.warnings if w not in warnings]
        info = res.info
        if progress is not None:
            progress(i, len(starts))
    return SelfInfluence(scores, converged, tuple(warnings), info)


def own_loss_change(
    problem: Problem, theta_s: Tensor, delta: Tensor, x_own: Tensor, t_own: Tensor
) -> tuple[Tensor, Tensor]:
    """``(ℓ_z(θˢ), ℓ_z(θˢ + Δ_z))`` for M models, each evaluated on its own example ``z``.

    ``delta (M, d)`` are the responses, ``x_own (M, ...)``/``t_own (M, ...)`` the removed examples
    (one per model); compute in the dtype of the inputs (float64 for scores near rounding).
    """

    def loss(theta: Tensor, xz: Tensor, tz: Tensor) -> Tensor:
        return problem.example_losses(theta, xz[None], tz[None]).sum()

    with torch.no_grad():
        before = vmap(loss, in_dims=(None, 0, 0))(theta_s, x_own, t_own)
        after = vmap(loss, in_dims=(0, 0, 0))(theta_s[None] + delta, x_own, t_own)
    return before, after


# --------------------------------------------------------------------------- detection


def inspection_order(scores: Tensor) -> Tensor:
    """Indices by decreasing score; ties keep index order (a stable sort)."""
    return torch.sort(scores.double().cpu(), descending=True, stable=True).indices


def detection_curve(scores: Tensor, corrupted: Tensor) -> Tensor:
    """``found (N + 1,)``: the share of corrupted examples among the first k inspected, k = 0..N,
    inspecting in decreasing score order."""
    mask = corrupted.bool().cpu()
    total = int(mask.sum())
    if total == 0:
        raise ValueError("no corrupted examples: the detection curve is undefined")
    hits = mask[inspection_order(scores)].double()
    return torch.cat([torch.zeros(1, dtype=torch.float64), hits.cumsum(0) / total])


def detection_auc(found: Tensor) -> float:
    """Area under the detection curve: the mean share found over budgets k = 1..N (a right
    Riemann sum of ``found`` against the inspected fraction k/N)."""
    return float(found[1:].mean())


def found_at(found: Tensor, inspected: float) -> tuple[int, float]:
    """``(k, found[k])`` with ``k = round(inspected·N)`` examples inspected."""
    n = found.numel() - 1
    k = min(n, max(0, round(inspected * n)))
    return k, float(found[k])


def random_auc(n: int, corrupted: int) -> tuple[float, float]:
    """Mean and standard deviation of :func:`detection_auc` for a uniformly random order.

    AUC = (1/(N·C)) Σ_j (N + 1 − pos_j) over the C corrupted positions, a simple random sample of
    {1..N}; hence E = (N + 1)/(2N) and Var = (N + 1)(N − C)/(12 N² C).
    """
    _check_counts(n, corrupted)
    mean = (n + 1) / (2 * n)
    var = (n + 1) * (n - corrupted) / (12 * n * n * corrupted)
    return mean, math.sqrt(var)


def random_found_interval(
    n: int, corrupted: int, k: int, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and central ``level`` interval of the share found among k random inspections.

    The count found is hypergeometric (N, C, k): mean k·C/N; the interval's ends are its exact
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles, divided by C.
    """
    _check_counts(n, corrupted)
    if not 0 <= k <= n:
        raise ValueError(f"k must be in 0..{n}, got {k}")
    lo_c, hi_c = max(0, k - (n - corrupted)), min(k, corrupted)
    log_total = _log_comb(n, k)
    pmf = [
        math.exp(_log_comb(corrupted, i) + _log_comb(n - corrupted, k - i) - log_total)
        for i in range(lo_c, hi_c + 1)
    ]
    cdf, acc = [], 0.0
    for p in pmf:
        acc += p
        cdf.append(acc)
    tail = (1.0 - level) / 2

    def quantile(q: float) -> int:
        # smallest count whose CDF reaches q (relative slack for rounding in the sum)
        for i, c in enumerate(cdf):
            if c >= q * (1 - 1e-12):
                return lo_c + i
        return hi_c

    mean = k * corrupted / n
    return mean / corrupted, quantile(tail) / corrupted, quantile(1 - tail) / corrupted


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _check_counts(n: int, corrupted: int) -> None:
    if not 0 < corrupted <= n:
        raise ValueError(f"need 0 < corrupted ≤ N, got corrupted={corrupted}, N={n}")
