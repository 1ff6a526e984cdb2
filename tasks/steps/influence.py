"""Step ``influence``: (C + λI)⁻¹ g_z for all M removals at once, and what it predicts."""

from __future__ import annotations

import math

from pbrf.influence import (
    grad_test_loss,
    inverse_curvature_product,
    predicted_test_loss_change,
    removal_gradients,
    self_influence,
)
from pbrf.study.memory import device_chunk
from tasks import schemas
from tasks.engine import progress
from tasks.engine.context import StepContext
from tasks.steps.runtime import (
    build_problem,
    load_data,
    load_selection,
    load_theta,
    read_top_eigenvalue,
    removed_lists,
    state,
)


def influence(ctx: StepContext) -> None:
    """Write Δ_IF = ε (C + λI)⁻¹ g_z (stacked state dict, Eq. 10), the predicted change of the
    mean test loss ε ∇L_testᵀ (C + λI)⁻¹ g_z (Eq. 23, in ``eval_dtype``) and self-influence per
    removal, and the solver's record. ε = 1/N."""
    cfg = ctx.cfg
    ds = load_data(ctx)
    problem, _ = build_problem(cfg, ds)
    theta_s = load_theta(ctx, problem, "theta_s")
    sel = load_selection(ctx)
    removed = sel.removed.to(ds.x_train.device)
    eps = 1.0 / ds.n_train
    ic = cfg.influence

    grads = removal_gradients(problem, theta_s, ds.x_train[removed], ds.t_train[removed])
    with progress.steps(f"influence ({ic.solver.name})") as bar:
        res = inverse_curvature_product(
            problem,
            theta_s,
            ds.x_train,
            ds.t_train,
            grads,
            damping=cfg.damping,
            solver=ic.solver,
            curvature=ic.curvature,
            chunk_size=device_chunk(cfg, grads.shape[0]),
            top_eigenvalue=read_top_eigenvalue(ctx),
            progress=bar,
            kernel=cfg.kernel,
        )
    for w in res.warnings:
        ctx.warn(f"influence: {w}")
    q = res.x

    # predictions in eval_dtype: the gradients and the product at full precision
    ev = load_data(ctx, cfg.eval_dtype)
    problem_ev, _ = build_problem(cfg, ev, cfg.eval_dtype)
    theta_ev = load_theta(ctx, problem_ev, "theta_s", cfg.eval_dtype)
    test = sel.test_index.to(ev.x_test.device)
    q_ev = q.to(theta_ev.dtype)
    test_grad = grad_test_loss(problem_ev, theta_ev, ev.x_test[test], ev.t_test[test])
    predicted = predicted_test_loss_change(test_grad, q_ev, eps)
    selfinf = self_influence(grads.to(theta_ev.dtype), q_ev, eps)

    m = q.shape[0]
    ctx.save_checkpoint(
        "influence_delta",
        state(problem, eps * q),
        meta={"epsilon": eps, "solver": res.solver},
    )
    ctx.write_table(
        "influence_removals",
        schemas.INFLUENCE_REMOVALS,
        {
            "removal_id": list(range(m)),
            "removed_indices": removed_lists(sel.removed),
            "predicted_test_loss_change": predicted.detach().double().cpu().tolist(),
            "self_influence": selfinf.detach().double().cpu().tolist(),
        },
    )
    info = res.info

    def get(key: str, cast: type) -> list:
        value = info.get(key)
        ok = value is not None and not (isinstance(value, float) and math.isnan(value))
        return [cast(value) if ok else None]

    ctx.write_table(
        "solver",
        schemas.SOLVER,
        {
            "solver": [res.solver],
            "curvature": [ic.curvature],
            "damping": [cfg.damping],
            "epsilon": [eps],
            "depth": get("depth", int),
            "repeats": get("repeats", int),
            "batch_size": [getattr(ic.solver, "batch_size", None)],
            "scale": get("scale", float),
            "top_eigenvalue": get("top_eigenvalue", float),
            "horizon": get("horizon", float),
            "iterations": get("iterations", int),
            "max_residual": get("max_residual", float),
            "method": get("method", str),
            "converged": [bool(res.converged)],
            "warnings": ["; ".join(res.warnings)],
            "scale_trials": ["; ".join(info["scale_trials"]) if info.get("scale_trials") else None],
        },
    )
