"""``pbrf tune PRESET --lissa-scale``: LiSSA's σ chosen as the paper chose it.

Appendix E.3: "We treated the scaling in the LiSSA algorithm as a separate hyperparameter and
tuned the scaling in the range {10, 25, 50, 100, 150, 200, 250, 300, 400, 500} so that the
algorithm converges." Read here as: the smallest σ of the grid whose recursion (Eq. 51–52, at
the config's depth, repeats, minibatch and damping) does not diverge — a smaller σ is a longer
horizon T/σ, closer to the exact inverse, so the smallest convergent one is the natural pick.

The recursion runs on the study's own θˢ and removal gradients: the nodes the influence node
depends on (``prepare``, ``train_base``, ``select``, ``spectrum``) are run (or reused) in the
study's run directory first, so a later
``pbrf run --set influence.solver.scale=<σ>`` reuses them. Divergence is the solver's own test
(:class:`pbrf.solvers.LissaDivergenceError`, raised at the first step whose norm leaves the
series' bound), so a diverging σ costs only the steps up to its detection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pbrf.influence import inverse_curvature_product, removal_gradients
from pbrf.solvers import LissaDivergenceError, LissaSettings
from tasks.engine import progress
from tasks.engine.context import StepContext
from tasks.engine.plan import build_plan
from tasks.engine.runner import run_node, write_run_config
from tasks.steps.runtime import build_problem, load_data, load_selection, load_theta

SCALE_GRID = (10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0)


def tune_lissa_scale(root: Path, cfg: Any, grid: tuple[float, ...] = SCALE_GRID) -> dict[str, Any]:
    """Try σ of ``grid`` in increasing order on the study's θˢ and removals; the first whose
    LiSSA recursion does not diverge is chosen (``chosen_scale`` is ``None`` when all do)."""
    solver = cfg.influence.solver
    if not isinstance(solver, LissaSettings):
        raise ValueError(f"influence.solver.name={solver.name} has no LiSSA scale to tune")
    plan = build_plan(cfg.model_dump(mode="json"))
    influence = plan["influence"]
    write_run_config(root, cfg)
    ancestors = _ancestors(plan, influence.id)
    for node in plan:  # in the plan's (topological) order; the study reuses them
        if node.id in ancestors:
            run_node(root, cfg, node.id, plan=plan)
    ctx = StepContext(root=root, config=cfg, plan=plan, node=influence)
    ds = load_data(ctx)
    problem, _ = build_problem(cfg, ds)
    theta = load_theta(ctx, problem, "theta_s")
    sel = load_selection(ctx, test_points=False)
    removed = sel.removed.to(ds.x_train.device)
    grads = removal_gradients(problem, theta, ds.x_train[removed], ds.t_train[removed])
    tried: list[dict[str, Any]] = []
    chosen = None
    for sigma in sorted(grid):
        settings = solver.model_copy(update={"scale": float(sigma)})
        try:
            with progress.steps(f"LiSSA σ = {sigma:g}") as bar:
                res = inverse_curvature_product(
                    problem, theta, ds.x_train, ds.t_train, grads, damping=cfg.damping,
                    solver=settings, curvature=cfg.influence.curvature, progress=bar,
                    kernel=cfg.kernel,
                )  # fmt: skip
        except LissaDivergenceError as exc:
            tried.append({"scale": sigma, "converged": False, "diverged_at_step": exc.step,
                          "repeat": exc.repeat, "ratio": exc.ratio})  # fmt: skip
            continue
        finite = bool(res.x.isfinite().all())
        tried.append({"scale": sigma, "converged": finite and res.converged,
                      "diverged_at_step": None, "horizon": solver.depth / sigma,
                      "warnings": list(res.warnings)})  # fmt: skip
        if finite:
            chosen = sigma
            break
    return {
        "experiment": cfg.name,
        "procedure": "smallest σ of the grid whose LiSSA recursion does not diverge",
        "grid": list(sorted(grid)),
        "tried": tried,
        "chosen_scale": chosen,
        "horizon": None if chosen is None else solver.depth / chosen,
        "depth": solver.depth,
        "repeats": solver.repeats,
        "batch_size": solver.batch_size,
        "damping": cfg.damping,
        "removals": int(sel.removed.shape[0]),
        "run_directory": str(root),
    }


def _ancestors(plan: Any, node_id: str) -> set[str]:
    seen, todo = set(), [node_id]
    while todo:
        for u in plan[todo.pop()].upstream:
            if u not in seen:
                seen.add(u)
                todo.append(u)
    return seen
