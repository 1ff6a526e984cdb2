"""Step ``spectrum``: the largest eigenvalue of the curvature at θˢ, computed once.

LiSSA's automatic scale σ = factor·(λ_max + λ) and the horizon-matched PBRF (η·S = T/σ) both
need λ_max; computing it in its own step lets both read one number, and changing the damping
does not redo it.
"""

from __future__ import annotations

from pbrf.influence import largest_curvature_eigenvalue
from pbrf.study.memory import device_chunk
from tasks import schemas
from tasks.engine.context import StepContext
from tasks.steps.runtime import build_problem, load_data, load_theta


def spectrum(ctx: StepContext) -> None:
    cfg = ctx.cfg
    ds = load_data(ctx)
    problem, _ = build_problem(cfg, ds)
    theta_s = load_theta(ctx, problem, "theta_s")
    iters = getattr(cfg.influence.solver, "power_iters", 30)
    # the algebraic λ_max: on an indefinite Hessian power iteration may first find the most
    # negative eigenvalue, which is then recorded as a warning
    est, negative = largest_curvature_eigenvalue(
        problem,
        theta_s,
        ds.x_train,
        ds.t_train,
        curvature=cfg.influence.curvature,
        iters=iters,
        chunk_size=device_chunk(cfg, 1),
    )
    if negative is not None:
        ctx.warn(
            f"curvature: the {cfg.influence.curvature} at θˢ is indefinite — power iteration "
            f"found an eigenvalue ≈ {negative:.4g} larger in magnitude than λ_max ≈ "
            f"{est.value:.4g}; the LiSSA series converges only for damping > {-negative:.3g}"
        )
    if not est.converged:
        ctx.warn(
            f"spectrum: power iteration did not converge in {est.iterations} iterations "
            f"(λ_max ≈ {est.value:.4g}); LiSSA's automatic scale may be too small"
        )
    ctx.write_table(
        "spectrum",
        schemas.SPECTRUM,
        {
            "curvature": [cfg.influence.curvature],
            "top_eigenvalue": [float(est.value)],
            "iterations": [int(est.iterations)],
            "converged": [bool(est.converged)],
        },
    )
