"""LiSSA at several scales σ against the exact damped solve, on a finished run's θˢ and removals.

    python benchmarks/lissa_scale_vs_exact.py runs/concrete-mlp --scales 10,29.06

For each σ: LiSSA with the run's depth, repeats and minibatch (Eq. 51–52), against the float64
direct solve of (G + λI)⁻¹ g_z (the dual/Woodbury solve when N·r < d, else the primal): the
median and largest relative error per removal, the median norm ratio, and the Spearman
correlation between the test-loss changes each predicts (Eq. 23) and the exact solve's. A
smaller σ is a longer horizon T/σ (closer to the exact inverse) but, near the series'
stability edge (λ_max + λ)/2, amplifies the minibatch noise in the top curvature directions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from scipy import stats

from pbrf.influence import grad_test_loss, inverse_curvature_product, removal_gradients
from pbrf.solvers import ExactSettings, LissaSettings
from pbrf.study.config import StudyConfig
from tasks.engine.context import StepContext
from tasks.engine.plan import build_plan
from tasks.steps.runtime import build_problem, load_data, load_selection, load_theta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run directory (LiSSA influence)")
    ap.add_argument("--scales", required=True, help="comma-separated σ, e.g. 10,29.06")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = StudyConfig.model_validate(json.loads((args.run / "config.json").read_text())["config"])
    solver = cfg.influence.solver
    if solver.name != "lissa":
        raise SystemExit(f"{args.run}: influence.solver.name={solver.name}, not lissa")
    plan = build_plan(cfg.model_dump(mode="json"))
    ctx = StepContext(root=args.run, config=cfg, plan=plan, node=plan["influence"])
    ds = load_data(ctx)
    problem, _ = build_problem(cfg, ds)
    theta = load_theta(ctx, problem, "theta_s")
    sel = load_selection(ctx)
    grads = removal_gradients(problem, theta, ds.x_train[sel.removed], ds.t_train[sel.removed])
    ev = load_data(ctx, "float64")
    problem64, _ = build_problem(cfg, ev, "float64")
    theta64 = load_theta(ctx, problem64, "theta_s", "float64")
    test = sel.test_index
    test_grad = grad_test_loss(problem64, theta64, ev.x_test[test], ev.t_test[test])
    exact = inverse_curvature_product(
        problem64, theta64, ev.x_train, ev.t_train, grads.double(), damping=cfg.damping,
        solver=ExactSettings(), curvature=cfg.influence.curvature,
    ).x  # fmt: skip
    predicted_exact = exact @ test_grad
    print(f"{args.run}: d = {theta.numel()}, M = {grads.shape[0]}, λ = {cfg.damping:g}, "
          f"T = {solver.depth}, R = {solver.repeats}, batch {solver.batch_size}")  # fmt: skip
    print("σ        T/σ     rel. error median (max)   ‖x‖/‖exact‖   Spearman vs exact   seconds")
    for sigma in (float(s) for s in args.scales.split(",")):
        settings = LissaSettings(
            depth=solver.depth, scale=sigma, repeats=solver.repeats,
            batch_size=solver.batch_size, seed=solver.seed,
        )  # fmt: skip
        t0 = time.perf_counter()
        x = inverse_curvature_product(
            problem, theta, ds.x_train, ds.t_train, grads, damping=cfg.damping,
            solver=settings, curvature=cfg.influence.curvature, kernel=cfg.kernel,
        ).x.double()  # fmt: skip
        rel = (x - exact).norm(dim=1) / exact.norm(dim=1)
        ratio = (x.norm(dim=1) / exact.norm(dim=1)).median()
        rho = stats.spearmanr((x @ test_grad).numpy(), predicted_exact.numpy()).statistic
        print(f"{sigma:<8g} {solver.depth / sigma:<7.4g} {rel.median():.3f} ({rel.max():.3f})"
              f"{'':14}{ratio:.3f}{'':9}{rho:.3f}{'':13}{time.perf_counter() - t0:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
