"""Step ``influence``: (G + λI)⁻¹ g_z for all M removals at once, and what it predicts."""

from __future__ import annotations

from pathlib import Path

from pbrf.config import StudyConfig
from pbrf.influence import (
    IHVPResult,
    eval_test_loss,
    grad_test_loss,
    influence_parameters,
    inverse_curvature_product,
    predicted_test_loss_change,
    removal_gradients,
    self_influence,
)
from tasks import schemas
from tasks.artifacts import remove_stale_temps, save_checkpoint, write_table
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout
from tasks.runtime import (
    StepBar,
    build_problem,
    forward_ad_section,
    load_dataset_artifact,
    load_selection,
    load_theta,
    removed_lists,
    state_from_flat,
    with_bar,
)


def influence(out: Path | str, cfg: StudyConfig) -> list[Path]:
    """Write ``influence/``: θ_IF = θˢ + ε·ihvp (stacked state dict), the predicted test-loss
    change ε ∇L_testᵀ ihvp (Eq. 23) and self-influence per removal, and the solver's record
    (scale, top eigenvalue, depth, repeats, horizon T/σ). ε = 1/N."""
    layout = RunLayout(out)
    remove_stale_temps(layout.influence_dir)
    ds = load_dataset_artifact(layout, cfg)
    problem, _ = build_problem(cfg, ds)
    theta_s = load_theta(layout, problem, cfg)
    sel = load_selection(layout, cfg)
    removed = sel.removed.to(ds.x_train.device)
    eps = 1.0 / ds.n_train
    ic = cfg.influence

    grads = removal_gradients(problem, theta_s, ds.x_train[removed], ds.t_train[removed])
    with forward_ad_section():  # curvature products use torch.func.jvp
        bar = StepBar(f"influence ({ic.solver})")
        res = with_bar(
            bar,
            lambda: inverse_curvature_product(
                problem,
                theta_s,
                ds.x_train,
                ds.t_train,
                grads,
                damping=cfg.damping,
                solver=ic.solver,
                curvature=ic.curvature,
                depth=ic.depth,
                scale=ic.scale,
                scale_factor=ic.scale_factor,
                repeats=ic.repeats,
                batch_size=ic.batch_size,
                cg_max_iter=ic.cg_max_iter,
                cg_tol=ic.cg_tol,
                seed=ic.seed,
                progress=bar,
            ),
        )
    ihvp = res.x
    theta_if = influence_parameters(theta_s, ihvp, eps)

    test = sel.test_index.to(ds.x_test.device)
    x_test, t_test = ds.x_test[test], ds.t_test[test]
    base_loss = float(eval_test_loss(problem, theta_s, x_test, t_test))
    predicted = predicted_test_loss_change(
        grad_test_loss(problem, theta_s, x_test, t_test), ihvp, eps
    )
    selfinf = self_influence(grads, ihvp, eps)
    losses = eval_test_loss(problem, theta_if, x_test, t_test).double().cpu()
    m = ihvp.shape[0]
    h = config_hash(cfg, "influence")
    info = dict(res.info)
    save_checkpoint(
        layout.influence_params,
        state_from_flat(problem, theta_if),
        step="influence",
        config_hash=h,
        meta={"epsilon": eps, "solver": res.solver, **{k: info[k] for k in sorted(info)}},
    )
    write_table(
        layout.influence_removals,
        schemas.INFLUENCE_REMOVALS,
        {
            "removal_id": list(range(m)),
            "removed_indices": removed_lists(sel.removed),
            "base_test_loss": [base_loss] * m,
            "predicted_test_loss_change": predicted.detach().double().cpu().tolist(),
            "self_influence": selfinf.detach().double().cpu().tolist(),
            "test_loss": losses.tolist(),
            "test_loss_change": (losses - base_loss).tolist(),
        },
        step="influence",
        config_hash=h,
    )
    write_table(
        layout.solver, schemas.SOLVER, solver_row(res, cfg, eps), step="influence", config_hash=h
    )
    return layout.outputs("influence")


def solver_row(res: IHVPResult, cfg: StudyConfig, eps: float) -> dict[str, list]:
    """The one-row ``solver`` table (:data:`tasks.schemas.SOLVER`); null where not applicable."""
    info, lissa = res.info, res.solver == "lissa"

    def get(key: str, cast: type, applies: bool = True) -> list:
        value = info.get(key)
        return [cast(value) if applies and value is not None else None]

    return {
        "solver": [res.solver],
        "curvature": [cfg.influence.curvature],
        "damping": [cfg.damping],
        "epsilon": [eps],
        "depth": get("depth", int, lissa),
        "repeats": get("repeats", int, lissa),
        "batch_size": [cfg.influence.batch_size if lissa else None],
        "scale": get("scale", float, lissa),
        "top_eigenvalue": get("top_eigenvalue", float, lissa),
        "horizon": get("horizon", float, lissa),
        "iterations": get("iterations", int),
        "max_residual": get("max_residual", float),
    }
