"""Steps ``self_influence`` and ``self_pbrf``: every training example's self-influence under
influence functions and under the PBRF (Appendix F.3, Figure 6), on the corrupted labels that
``prepare`` stored.

Influence solves the N gradients with ``mislabel.solver`` (float64 exact solve by default:
fast while the dual kernel (N·r)² or the primal d² fits in memory). The PBRF trains one optimum
of Eq. 8 per example — the shard's examples as one vectorized run — and records the change of
that example's own loss, evaluated in ``eval_dtype``; the responses themselves are not kept
(N × d floats).
"""

from __future__ import annotations

import torch

from pbrf.convergence import tail_decrease
from pbrf.mislabel import own_loss_change, self_influence_scores
from tasks import schemas
from tasks.engine import progress
from tasks.engine.context import StepContext
from tasks.steps.retrain import TAIL, TAIL_THRESHOLD, train_removals
from tasks.steps.runtime import build_problem, load_base_run, load_data, load_theta, shard_rows


def corrupted_mask(ctx: StepContext) -> torch.Tensor:
    """The ``(N,)`` mask of corrupted training rows that ``prepare`` recorded."""
    sd = ctx.load_checkpoint("dataset").state_dict
    if "corrupted" not in sd:
        raise KeyError("the prepared data set records no corrupted rows (mislabel is not set)")
    return sd["corrupted"].bool().cpu()


def self_influence(ctx: StepContext) -> None:
    """Write ``mislabel/influence.parquet``: ε g_zᵀ (C + λI)⁻¹ g_z for every training z."""
    cfg = ctx.cfg
    ml = cfg.mislabel
    ds = load_data(ctx)
    problem, _ = build_problem(cfg, ds)
    theta_s = load_theta(ctx, problem, "theta_s")
    with progress.steps(f"self-influence ({ml.solver.name})") as bar:
        res = self_influence_scores(
            problem,
            theta_s,
            ds.x_train,
            ds.t_train,
            damping=cfg.damping,
            solver=ml.solver,
            curvature=cfg.influence.curvature,
            chunk=ml.rhs_chunk,
            progress=bar,
        )
    for w in res.warnings:
        ctx.warn(f"self-influence: {w}")
    n = ds.n_train
    ctx.write_table(
        "mislabel_influence",
        schemas.MISLABEL_INFLUENCE,
        {
            "train_index": list(range(n)),
            "corrupted": corrupted_mask(ctx).tolist(),
            "self_influence": res.scores.tolist(),
            "solver_converged": [bool(res.converged)] * n,
        },
    )


def self_pbrf(ctx: StepContext) -> None:
    """Write ``mislabel/pbrf/shard-<i>/scores.parquet``: for each training example z of the
    shard, the PBRF optimum Δ_z that removes z and ℓ_z(θˢ + Δ_z) − ℓ_z(θˢ)."""
    cfg = ctx.cfg
    shard, shards = ctx.params["shard"], ctx.params["shards"]
    ds = load_data(ctx)
    problem, _ = build_problem(cfg, ds)
    base = load_base_run(ctx, problem, cold=False)
    rows = shard_rows(ds.n_train, shard, shards)
    removed = torch.tensor(rows, dtype=torch.long)[:, None]
    variant = "pbrf" if cfg.mislabel.pbrf == "matched" else "pbrf_paper"
    label = "self PBRF" + (f" {shard + 1}/{shards}" if shards > 1 else "")
    res, schedule = train_removals(ctx, variant, problem, base, ds, removed, label)
    ev = load_data(ctx, cfg.eval_dtype)
    problem_ev, _ = build_problem(cfg, ev, cfg.eval_dtype)
    theta_ev = load_theta(ctx, problem_ev, "theta_s", cfg.eval_dtype)
    own = removed[:, 0].to(ev.x_train.device)
    before, after = own_loss_change(
        problem_ev, theta_ev, res.delta.to(theta_ev.dtype), ev.x_train[own], ev.t_train[own]
    )
    m = len(rows)
    points = res.checkpoints
    if points is not None and res.checkpoint_epochs[1] > res.checkpoint_epochs[0]:
        share = tail_decrease(points.double().cpu(), TAIL)
    else:
        share = torch.full((m,), float("nan"), dtype=torch.float64)
    falling = int((share > TAIL_THRESHOLD).sum())
    if falling:
        ctx.warn(
            f"self PBRF ({cfg.mislabel.pbrf} schedule, {schedule.epochs} epochs): the objective "
            f"is still falling for {falling} of {m} examples (up to "
            f"{float(torch.nan_to_num(share).max()):.0%} of its decrease in the last "
            f"{TAIL:.0%})"
        )
    mask = corrupted_mask(ctx)
    ctx.write_table(
        "mislabel_pbrf",
        schemas.MISLABEL_PBRF,
        {
            "train_index": rows,
            "corrupted": mask[rows].tolist(),
            "loss_before": before.double().cpu().tolist(),
            "loss_after": after.double().cpu().tolist(),
            "self_influence": (after - before).double().cpu().tolist(),
            "tail_decrease": share.double().tolist(),
        },
    )
