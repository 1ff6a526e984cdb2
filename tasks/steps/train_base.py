"""Step ``train_base``: θ⁰ → θˢ on all N examples for K epochs, recording the batch order."""

from __future__ import annotations

from pbrf.metrics import eval_test_loss
from pbrf.responses import train_base as pbrf_train_base
from tasks import schemas
from tasks.engine import progress
from tasks.engine.context import StepContext
from tasks.steps.checkpoints import save_tracin_checkpoints
from tasks.steps.runtime import build_problem, load_data, state


def train_base(ctx: StepContext) -> None:
    """Write θ⁰, θˢ (state dicts), the ``(K, N)`` batch order, the per-epoch objective and the
    ``train.checkpoints`` TracIn checkpoints (stacked θ, with each one's step and visits)."""
    cfg = ctx.cfg
    ds = load_data(ctx)
    problem, theta0 = build_problem(cfg, ds)  # θ⁰ is fixed by model.seed
    assert problem.spec is not None
    with progress.epochs("train base", cfg.train.epochs) as bar:
        run = pbrf_train_base(
            problem, theta0, ds.x_train, ds.t_train, cfg.train, progress=bar, kernel=cfg.kernel
        )
    if run.converged is False:
        ctx.warn(
            f"base training: L-BFGS stopped after {cfg.train.epochs} iterations without "
            f"reaching ‖∇‖∞ ≤ {cfg.train.optimizer.tol:g}"
        )
    train_loss = float(run.epoch_loss[-1]) if run.epoch_loss.numel() else float("nan")
    test_loss = float(eval_test_loss(problem, run.theta_s, ds.x_test, ds.t_test))
    meta = {"n_train": ds.n_train, "d": problem.spec.dim}
    ctx.save_checkpoint("theta0", state(problem, run.theta0), meta=meta)
    ctx.save_checkpoint(
        "theta_s",
        state(problem, run.theta_s),
        meta={
            **meta,
            "final_objective": train_loss,
            "test_loss_all": test_loss,
            "converged": run.converged,
        },
    )
    ctx.save_checkpoint("orders", {"orders": run.orders})
    save_tracin_checkpoints(ctx, problem, run.checkpoints, cfg.train.batch_size, ds.n_train)
    loss = run.epoch_loss.detach().double().cpu().flatten()
    ctx.write_table(
        "base_history",
        schemas.BASE_HISTORY,
        {"epoch": list(range(loss.numel())), "objective": loss.tolist()},
    )
