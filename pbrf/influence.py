"""Influence estimates at θˢ (Eq. 10, 23, 49, 53) and the iHVP that drives them.

With ``g_z = Σ_{z∈S} ∇_θ ℓ_z(θˢ)`` (the removed examples' loss gradients, regularizer folded in)
and ``q_z = (G + λI)⁻¹ g_z``:

* parameter response (Eq. 10 / 49):    ``θ_IF = θˢ + ε q_z``
* predicted test-loss change (Eq. 23): ``ΔL_test ≈ ε ∇L_testᵀ q_z``
* the same through s_test (Eq. 53):    ``ΔL_test ≈ ε g_zᵀ s_test``, ``s_test = (G + λI)⁻¹ ∇L_test``
* self-influence:                      ``ε g_zᵀ q_z``

:func:`inverse_curvature_product` computes ``q = (C + λI)⁻¹ V`` (C the GNH or the Hessian of J)
with the solver its :data:`~pbrf.solvers.SolverSettings` name, and returns an
:class:`IHVPResult` that says whether the solve can be trusted: ``converged``, ``warnings`` and
the solver's record in ``info``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from pbrf.curvature import (
    LinearizedGNH,
    Matvec,
    curvature_matvec,
    dense_from_matvec,
    gnh_kernel,
    sampled_matvec,
)
from pbrf.gradients import grad_test_loss, removal_gradients  # noqa: F401 (re-exported)
from pbrf.problem import Problem
from pbrf.solvers import (
    CGSettings,
    EigenEstimate,
    ExactSettings,
    HessianDivergenceError,
    LissaDivergenceError,
    LissaSettings,
    SolverSettings,
    conjugate_gradient,
    dense_solve,
    dual_solve,
    lissa,
    lissa_grid,
    power_iteration,
)


def influence_parameters(theta_s: Tensor, ihvp: Tensor, epsilon: float) -> Tensor:
    """``θˢ + ε (G + λI)⁻¹ g_z`` for each row of ``ihvp`` (Eq. 10 / 49)."""
    return theta_s[None] + epsilon * ihvp


def predicted_test_loss_change(test_grad: Tensor, ihvp: Tensor, epsilon: float) -> Tensor:
    """``ε ∇L_testᵀ (G + λI)⁻¹ g_z`` per removal (Eq. 23)."""
    return epsilon * (ihvp @ test_grad)


def predicted_test_loss_change_stest(
    s_test: Tensor, removal_grads: Tensor, epsilon: float
) -> Tensor:
    """``ε g_zᵀ s_test`` per removal — the s_test trick (Eq. 53)."""
    return epsilon * (removal_grads @ s_test)


def self_influence(removal_grads: Tensor, ihvp: Tensor, epsilon: float) -> Tensor:
    """``ε g_zᵀ (G + λI)⁻¹ g_z`` per removal."""
    return epsilon * (removal_grads * ihvp).sum(-1)


Curvature = Literal["gnh", "hessian"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IHVPResult:
    """``x = (C + λI)⁻¹ V`` (rows; the dtype of ``rhs``) and how far to trust it.

    ``converged`` is False whenever ``warnings`` is not empty. ``info`` holds JSON-friendly
    scalars (and lists for per-right-hand-side values); keys by solver —
    lissa: ``scale, top_eigenvalue, top_eigenvalue_source, power_iterations, power_converged,
    depth, repeats, batch_size, horizon, scale_trials`` (``scale='grid'``: each σ tried);
    cg: ``iterations, iterations_per_rhs, max_residual, residuals, restarts, max_iter, tol``;
    exact: ``method, factorization, compute_dtype, rank, matrix_size, matrix_bytes,
    max_residual, residuals, refinements``.
    """

    x: Tensor
    solver: str
    converged: bool
    warnings: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


def _validate(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    rhs: Tensor,
    damping: float,
    curvature: str,
    chunk_size: int | None,
    top_eigenvalue: float | None,
) -> Tensor:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a pbrf.problem.Problem, got {type(problem).__name__}")
    if theta.dim() != 1:
        raise ValueError(f"theta must be a flat vector (d,), got shape {tuple(theta.shape)}")
    d = theta.numel()
    if rhs.dim() not in (1, 2) or rhs.shape[-1] != d:
        raise ValueError(f"rhs must have shape (d,) or (k, {d}), got {tuple(rhs.shape)}")
    if not bool(torch.isfinite(rhs).all()):
        raise ValueError("rhs has non-finite entries")
    if x.shape[0] < 1 or x.shape[0] != t.shape[0]:
        raise ValueError(
            f"x and t must hold the same number (≥ 1) of examples, got {x.shape[0]} and {t.shape[0]}"
        )
    if isinstance(damping, bool) or not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite number ≥ 0, got {damping!r}")
    if curvature not in ("gnh", "hessian"):
        raise ValueError(f"curvature must be 'gnh' or 'hessian', got {curvature!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size must be ≥ 1 or None, got {chunk_size!r}")
    if top_eigenvalue is not None and not math.isfinite(top_eigenvalue):
        raise ValueError(f"top_eigenvalue must be finite or None, got {top_eigenvalue!r}")
    return rhs if rhs.dim() == 2 else rhs[None]


def _operator(
    problem: Problem, theta: Tensor, x: Tensor, t: Tensor, curvature: str, chunk_size: int | None
) -> Matvec:
    """The full-data curvature; the GNH linearized once (:class:`LinearizedGNH`)."""
    if curvature == "gnh":
        return LinearizedGNH(problem, theta, x, t, chunk_size)
    return curvature_matvec(problem, theta, x, t, "hessian", chunk_size)


def top_curvature_eigenvalue(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    *,
    curvature: Curvature = "gnh",
    iters: int = 30,
    seed: int = 0,
    tol: float = 1e-4,
    chunk_size: int | None = None,
) -> EigenEstimate:
    """λ_max of the full-data curvature (GNH or Hessian of J on ``(x, t)``) by power iteration
    from a start drawn with ``seed`` — what LiSSA's ``scale="auto"`` needs (pass its ``value``
    as ``top_eigenvalue`` to :func:`inverse_curvature_product`). For the Hessian it is the
    eigenvalue of largest magnitude, which may be negative."""
    _validate(problem, theta, x, t, theta[None], 0.0, curvature, chunk_size, None)
    if isinstance(iters, bool) or iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    op = _operator(problem, theta, x, t, curvature, chunk_size)
    return power_iteration(
        op, theta.numel(), iters=iters, tol=tol, dtype=theta.dtype, device=theta.device, seed=seed
    )


def largest_curvature_eigenvalue(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    *,
    curvature: Curvature = "gnh",
    iters: int = 30,
    seed: int = 0,
    tol: float = 1e-4,
    chunk_size: int | None = None,
) -> tuple[EigenEstimate, float | None]:
    """``(λ_max, λ_min or None)``: the algebraically largest eigenvalue of the curvature — what
    LiSSA's σ must exceed — and, when power iteration's largest-magnitude eigenvalue came out
    negative (an indefinite Hessian), that eigenvalue λ_min.

    For the GNH (PSD) this is :func:`top_curvature_eigenvalue`. A negative first estimate ν is
    followed by power iteration on ``C − νI``, whose largest-magnitude eigenvalue is
    ``λ_max − ν > 0``; the returned estimate is converged only when both runs were.
    """
    _validate(problem, theta, x, t, theta[None], 0.0, curvature, chunk_size, None)
    op = _operator(problem, theta, x, t, curvature, chunk_size)
    return algebraic_top_eigenvalue(
        op, theta.numel(), iters=iters, seed=seed, tol=tol, dtype=theta.dtype, device=theta.device
    )


def algebraic_top_eigenvalue(
    op: Matvec,
    d: int,
    *,
    iters: int = 30,
    seed: int = 0,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[EigenEstimate, float | None]:
    """:func:`largest_curvature_eigenvalue` for a symmetric operator on rows ``(k, d)``."""

    def power(matvec: Matvec) -> EigenEstimate:
        return power_iteration(
            matvec, d, iters=iters, tol=tol, dtype=dtype, device=device, seed=seed
        )

    first = power(op)
    if first.value >= 0:
        return first, None
    nu = first.value
    shifted = power(lambda v: op(v) - nu * v)
    top = EigenEstimate(
        shifted.value + nu, first.iterations + shifted.iterations,
        first.converged and shifted.converged,
    )  # fmt: skip
    return top, nu


def bottom_eigenvalue(op: Matvec, theta: Tensor, shift: float, iters: int) -> float | None:
    """λ_min of a symmetric operator whose spectrum lies below ``shift`` (LiSSA's σ), by power
    iteration on ``op − shift·I`` (every eigenvalue negative, the largest in magnitude is
    ``λ_min − shift``); ``None`` if the estimate is not finite."""
    est = power_iteration(
        lambda v: op(v) - shift * v, theta.numel(), iters=iters, dtype=theta.dtype,
        device=theta.device,
    )  # fmt: skip
    value = est.value + shift
    return value if math.isfinite(value) else None


def inverse_curvature_product(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    rhs: Tensor,
    *,
    damping: float,
    solver: SolverSettings,
    curvature: Curvature = "gnh",
    chunk_size: int | None = None,
    top_eigenvalue: float | None = None,
    progress: Progress | None = None,
    kernel: str = "auto",
) -> IHVPResult:
    """``(C + λI)⁻¹ V`` for the rows of ``rhs (k, d)`` (Eq. 10, 49): ``C`` the GNH (Eq. 6) or
    the Hessian of J on ``(x, t)``, λ = ``damping``.

    * :class:`~pbrf.solvers.LissaSettings` — Eq. 51–52, minibatches of ``batch_size`` (None:
      the full data). ``scale="auto"`` uses ``top_eigenvalue`` when given (e.g. from
      :func:`top_curvature_eigenvalue`), else runs power iteration on the full-data curvature;
      ``scale="grid"`` takes the smallest σ of ``scale_grid`` that does not diverge
      (:func:`pbrf.solvers.lissa_grid`).
    * :class:`~pbrf.solvers.CGSettings` — Eq. 50 on the full data.
    * :class:`~pbrf.solvers.ExactSettings` — a direct solve in float64 whatever the dtype of θ:
      the dual (Woodbury) solve through the ``(N·r)²`` kernel of the GNH factor when
      ``N·r < d``, else the primal Cholesky of the dense ``d × d`` matrix (always for the
      Hessian). Memory: one such float64 matrix (8·(N·r)² or 8·d² bytes).

    ``chunk_size`` bounds the examples per batched product; ``progress(step, total)`` reports
    LiSSA steps, CG iterations or kernel blocks. A ``top_eigenvalue`` given to CG or the exact
    solve is recorded in ``info``. ``kernel`` picks how LiSSA's GNH products are computed
    (:func:`pbrf.curvature.gnh_kernel`: ``mlp`` runs an MLP's as batched matrix products, with
    no forward-mode autodiff); CG and the exact solve use the linearized GNH.
    """
    v = _validate(problem, theta, x, t, rhs, damping, curvature, chunk_size, top_eigenvalue)
    if isinstance(solver, ExactSettings):
        res = _exact(problem, theta, x, t, v, damping, solver, curvature, chunk_size, progress)
    elif isinstance(solver, CGSettings):
        res = _cg(problem, theta, x, t, v, damping, solver, curvature, chunk_size, progress)
    elif isinstance(solver, LissaSettings):
        res = _lissa(
            problem, theta, x, t, v, damping, solver, curvature, chunk_size, top_eigenvalue,
            progress, kernel,
        )  # fmt: skip
    else:
        raise TypeError(
            "solver must be LissaSettings, CGSettings or ExactSettings, got "
            f"{type(solver).__name__}"
        )
    out = res.x.to(rhs.dtype)
    info = dict(res.info)
    if top_eigenvalue is not None:
        info.setdefault("top_eigenvalue", float(top_eigenvalue))
    return IHVPResult(
        out if rhs.dim() == 2 else out[0], res.solver, res.converged, res.warnings, info
    )


def _exact(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    v: Tensor,
    damping: float,
    settings: ExactSettings,
    curvature: str,
    chunk_size: int | None,
    progress: Progress | None,
) -> IHVPResult:
    f64 = torch.float64

    def up(a: Tensor) -> Tensor:
        return a.detach().to(f64) if a.is_floating_point() else a

    th, x64, t64, v64 = up(theta), up(x), up(t), up(v)
    n, d = x.shape[0], theta.numel()
    info: dict[str, Any] = {"compute_dtype": "float64"}
    warnings: list[str] = []
    if curvature == "hessian":
        if settings.method == "dual":
            raise ValueError(
                "method='dual' needs the Gauss-Newton factor; the Hessian has no such low-rank "
                "structure: use method='primal' or 'auto'"
            )
        mv = curvature_matvec(problem, th, x64, t64, "hessian", chunk_size)
        res = dense_solve(
            lambda: dense_from_matvec(mv, d, f64, th.device, block=64), v64, damping=damping,
            matvec=mv,
        )  # fmt: skip
        info.update(matrix_size=d)
    else:
        op = LinearizedGNH(problem, th, x64, t64, chunk_size)
        r = op.rank
        mu = problem.weight_decay + damping
        method = settings.method
        if method == "auto":
            method = "dual" if n * r < d and mu > 0 else "primal"
        if method == "dual" and not mu > 0:
            raise ValueError(
                "method='dual' needs damping + weight decay > 0, got damping "
                f"{damping} and weight decay {problem.weight_decay}"
            )
        if op.factor_info["min_eigenvalue"] < -1e-8 * op.factor_info["max_eigenvalue"]:
            warnings.append(
                "the output Hessian has a negative eigenvalue "
                f"{op.factor_info['min_eigenvalue']:.3g} (the loss is not convex in the outputs); "
                "it was clipped to 0"
            )
        info.update(rank=r)
        if method == "dual":
            res = dual_solve(
                lambda: op.kernel(progress), op.factor, op.factor_t, v64, n=n, damping=damping,
                weight_decay=problem.weight_decay,
            )  # fmt: skip
            info.update(matrix_size=n * r)
        else:
            res = dense_solve(lambda: op.gram(progress), v64, damping=damping, matvec=op.matvec)
            info.update(matrix_size=d)
    info.update(
        method=res.method,
        factorization=res.factorization,
        matrix_bytes=8 * info["matrix_size"] ** 2,
        max_residual=float(res.residual.max()),
        residuals=res.residual.tolist(),
        refinements=res.refinements,
    )
    warnings.extend(res.warnings)
    return IHVPResult(res.x, "exact", res.converged and not warnings, tuple(warnings), info)


def _cg(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    v: Tensor,
    damping: float,
    settings: CGSettings,
    curvature: str,
    chunk_size: int | None,
    progress: Progress | None,
) -> IHVPResult:
    op = _operator(problem, theta, x, t, curvature, chunk_size)
    res = conjugate_gradient(
        op, v, damping=damping, max_iter=settings.max_iter, tol=settings.tol, progress=progress
    )
    info = {
        "iterations": int(res.iterations.max()),
        "iterations_per_rhs": res.iterations.tolist(),
        "max_residual": float(res.residual.max()),
        "residuals": res.residual.tolist(),
        "restarts": res.restarts,
        "max_iter": settings.max_iter,
        "tol": settings.tol,
    }
    return IHVPResult(res.x, "cg", res.converged, res.warnings, info)


def _lissa(
    problem: Problem,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    v: Tensor,
    damping: float,
    settings: LissaSettings,
    curvature: str,
    chunk_size: int | None,
    top_eigenvalue: float | None,
    progress: Progress | None,
    kernel: str = "auto",
) -> IHVPResult:
    n = x.shape[0]
    batch = settings.batch_size
    if batch is not None and batch > n:
        raise ValueError(f"batch_size={batch} exceeds the {n} examples")
    if batch == n and settings.repeats > 1:
        raise ValueError(
            f"repeats={settings.repeats} would average identical runs: batch_size={batch} "
            "covers every example"
        )
    needs_full = (
        batch is None or batch == n or (settings.scale == "auto" and top_eigenvalue is None)
    )
    mlp = curvature == "gnh" and gnh_kernel(problem, kernel) is not None
    if not needs_full:
        full = None
    elif mlp:  # the same full-data GNH without forward-mode autodiff
        full = curvature_matvec(problem, theta, x, t, "gnh", chunk_size, kernel)
    else:
        full = _operator(problem, theta, x, t, curvature, chunk_size)

    def make_matvec() -> Matvec:  # a fresh draw of minibatches, the same for every call
        if batch is None or batch == n:
            assert full is not None
            return full
        gen = torch.Generator().manual_seed(settings.seed)
        return sampled_matvec(problem, theta, x, t, batch, gen, curvature, kernel)

    own_eigen = None  # the Hessian's λ_max: the algebraic top, not the largest magnitude
    if curvature == "hessian" and settings.scale == "auto" and top_eigenvalue is None:
        assert full is not None
        own_eigen, _ = algebraic_top_eigenvalue(
            full, theta.numel(), iters=settings.power_iters, dtype=theta.dtype,
            device=theta.device,
        )  # fmt: skip
        top_eigenvalue = own_eigen.value
    try:
        if settings.scale == "grid":
            res = lissa_grid(
                make_matvec, v, grid=settings.scale_grid, depth=settings.depth, damping=damping,
                repeats=settings.repeats, top_eigenvalue=top_eigenvalue, progress=progress,
            )  # fmt: skip
        else:
            res = lissa(
                make_matvec(),
                v,
                depth=settings.depth,
                scale=settings.scale,
                damping=damping,
                repeats=settings.repeats,
                scale_factor=settings.scale_factor,
                top_eigenvalue=top_eigenvalue,
                eigen_matvec=full,
                power_iters=settings.power_iters,
                progress=progress,
            )
    except LissaDivergenceError as exc:
        if curvature != "hessian":
            raise
        op = full or _operator(problem, theta, x, t, curvature, chunk_size)
        raise HessianDivergenceError(
            min_eigenvalue=bottom_eigenvalue(op, theta, exc.scale, settings.power_iters),
            **exc.fields(),
        ) from exc
    eigen = res.eigen or own_eigen
    source = "power_iteration" if eigen else "given" if top_eigenvalue is not None else None
    info = {
        "scale": res.scale,
        "top_eigenvalue": res.top_eigenvalue,
        "top_eigenvalue_source": source,
        "power_iterations": eigen.iterations if eigen else None,
        "power_converged": eigen.converged if eigen else None,
        "depth": res.depth,
        "repeats": res.repeats,
        "batch_size": batch,
        "horizon": res.horizon,
        "scale_trials": [trial.describe() for trial in res.trials] or None,
    }
    warnings = res.warnings
    if own_eigen is not None and not own_eigen.converged:
        warnings += (
            f"power iteration did not converge in {own_eigen.iterations} iteration(s) "
            f"(λ_max estimate {own_eigen.value:.4g}); σ = {settings.scale_factor:g} · "
            "(λ_max + λ) may be too small",
        )
    return IHVPResult(res.x, "lissa", res.converged and not warnings, warnings, info)
