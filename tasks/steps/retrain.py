"""Step ``retrain``: one variant's optima for one shard of the removals, as one vmapped run."""

from __future__ import annotations

import torch

from pbrf.convergence import still_decreasing, tail_decrease
from pbrf.data import Dataset
from pbrf.problem import Problem
from pbrf.responses import (
    BaseRun,
    Response,
    Schedule,
    lissa_horizon,
    lissa_scale,
    total_epochs,
)
from pbrf.responses import (
    retrain as pbrf_retrain,
)
from pbrf.study.schedules import variant_schedule
from pbrf.variants import DAMPED_VARIANTS
from tasks import schemas
from tasks.engine import progress
from tasks.engine.context import StepContext
from tasks.steps.runtime import (
    build_problem,
    load_base_run,
    load_data,
    load_selection,
    read_chosen_scale,
    read_top_eigenvalue,
    removed_lists,
    shard_rows,
    state,
)

TAIL, TAIL_THRESHOLD = 0.1, 0.05  # warn when > 5 % of the decrease came in the last 10 %
WARN_STILL_FALLING = frozenset({"pbrf", "linearized_pbrf", "pbrf_paper", "linearized_pbrf_paper"})


def falling_message(worst_share: float, falling: int, total: int) -> str:
    """One line on objectives still falling; a share above 1 means the objective at 90 % of the
    run was above its starting value: it moves by more than its own total decrease."""
    if worst_share > 1.0:
        how = (
            f"up to {worst_share:.1f}× its total decrease moved in the last {TAIL:.0%} of the "
            "run (the objective fluctuates at the scale of its own change)"
        )
    else:
        how = f"up to {worst_share:.0%} of its decrease came in the last {TAIL:.0%} of the run"
    return f"objective still falling for {falling} of {total} removals: {how}"


def matched_lissa_horizon(ctx: StepContext) -> float | None:
    """LiSSA's T/σ, when this run's PBRF horizon is matched to it."""
    cfg = ctx.cfg
    solver = cfg.influence.solver
    if solver.name != "lissa":
        return None
    if solver.scale == "grid":  # chosen by the influence node (Appendix E.3's procedure)
        return lissa_horizon(solver.depth, read_chosen_scale(ctx))
    scale = lissa_scale(solver.scale, solver.scale_factor, cfg.damping, read_top_eigenvalue(ctx))
    return lissa_horizon(solver.depth, scale)


def train_removals(
    ctx: StepContext,
    variant: str,
    problem: Problem,
    base: BaseRun,
    ds: Dataset,
    removed: torch.Tensor,
    label: str,
) -> tuple[Response, Schedule]:
    """``variant``'s optima (Table 1) for the removal sets ``removed`` as one vectorized run,
    with a progress bar ``label``; the PBRFs at LiSSA's horizon when the config matches it.
    Returns the response and the schedule it was trained with."""
    cfg = ctx.cfg
    needs_horizon = variant in ("pbrf", "linearized_pbrf") and cfg.retrain.pbrf.horizon == "matched"
    horizon = matched_lissa_horizon(ctx) if needs_horizon else None
    schedule = variant_schedule(cfg, variant, ds.n_train, horizon)
    with progress.epochs(label, total_epochs(cfg.train, schedule, variant)) as bar:
        res = pbrf_retrain(
            variant,
            problem,
            base,
            ds.x_train,
            ds.t_train,
            removed.to(ds.x_train.device),
            train=cfg.train,
            damping=cfg.damping if variant in DAMPED_VARIANTS else 0.0,
            schedule=schedule,
            progress=bar,
            kernel=cfg.kernel,
        )
    return res, schedule


def retrain(ctx: StepContext) -> None:
    """Write ``delta.pt`` (stacked Δ = θ − θˢ), ``removals.parquet`` and ``history.parquet``."""
    cfg = ctx.cfg
    variant, shard, shards = ctx.params["variant"], ctx.params["shard"], ctx.params["shards"]
    ds = load_data(ctx)
    problem, _ = build_problem(cfg, ds)
    base = load_base_run(ctx, problem, cold=variant == "cold")
    sel = load_selection(ctx, test_points=False)
    rows = shard_rows(sel.removed.shape[0], shard, shards)
    removed = sel.removed[rows]
    label = f"retrain {variant}" + (f" {shard + 1}/{shards}" if shards > 1 else "")
    res, _ = train_removals(ctx, variant, problem, base, ds, removed, label)
    history = res.epoch_loss.detach().double().cpu()  # (E, m)
    m = len(rows)
    lbfgs = res.converged is not None
    # the objective at the start, after 90 % of the epochs and at the end, each over the same
    # fixed pass of batches: the share of the decrease made in the last 10 % of the run
    points = res.checkpoints
    judged = points is not None and res.checkpoint_epochs[1] > res.checkpoint_epochs[0]
    if judged:
        share = tail_decrease(points.double().cpu(), TAIL)
        falling = still_decreasing(points.double().cpu(), TAIL, TAIL_THRESHOLD)
    else:
        share, falling = torch.full((m,), float("nan")), torch.zeros(m, dtype=torch.bool)
    if lbfgs and not bool(res.converged.all()):
        bad = [rows[i] for i in (~res.converged.cpu()).nonzero().flatten().tolist()]
        ctx.warn(
            f"{variant}: L-BFGS did not converge for removal(s) {bad} within "
            f"{cfg.train.epochs} iterations"
        )
    if variant in WARN_STILL_FALLING and bool(falling.any()):
        worst = float(torch.nan_to_num(share, nan=0.0).max())
        which = [rows[i] for i in falling.bool().nonzero().flatten().tolist()]
        ctx.warn(f"{variant}: {falling_message(worst, int(falling.sum()), m)} (removals {which})")
    ctx.save_checkpoint(
        "variant_delta",
        state(problem, res.delta),
        meta={"variant": variant, "removal_ids": rows, "epochs": res.epochs, "lr": res.lr},
    )
    final = history[-1] if history.numel() else torch.full((m,), float("nan"))
    ctx.write_table(
        "variant_removals",
        schemas.VARIANT_REMOVALS,
        {
            "variant": [variant] * m,
            "removal_id": rows,
            "removed_indices": removed_lists(removed),
            "epochs": [res.epochs] * m,
            "lr": [res.lr] * m,
            "final_objective": final.tolist(),
            "tail_decrease": share.double().tolist(),
            "still_decreasing": falling.bool().tolist(),
            "converged": res.converged.cpu().tolist() if lbfgs else [None] * m,
            "grad_norm": res.grad_norm.double().cpu().tolist() if lbfgs else [None] * m,
        },
    )
    e = history.shape[0]
    ctx.write_table(
        "variant_history",
        schemas.VARIANT_HISTORY,
        {
            "variant": [variant] * (e * m),
            "epoch": [i for i in range(e) for _ in range(m)],
            "removal_id": [rows[j] for _ in range(e) for j in range(m)],
            "objective": history.flatten().tolist(),
        },
    )
