"""Step ``train_base``: θ⁰ → θˢ on all N examples for K epochs, recording the batch order."""

from __future__ import annotations

from pathlib import Path

from pbrf.config import StudyConfig
from pbrf.influence import eval_test_loss
from pbrf.responses import train_base as pbrf_train_base
from tasks import schemas
from tasks.artifacts import remove_stale_temps, save_checkpoint, write_table
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout
from tasks.runtime import (
    EpochBar,
    build_problem,
    load_dataset_artifact,
    state_from_flat,
    with_bar,
)


def train_base(out: Path | str, cfg: StudyConfig) -> list[Path]:
    """Write θ⁰, θˢ (state dicts), the ``(K, N)`` batch order and the per-epoch objective."""
    layout = RunLayout(out)
    remove_stale_temps(layout.base_dir)
    ds = load_dataset_artifact(layout, cfg)
    problem, theta0 = build_problem(cfg, ds)  # θ⁰ is fixed by model.seed
    assert problem.spec is not None
    bar = EpochBar(f"train base ({cfg.name})", cfg.train.epochs)
    run = with_bar(
        bar,
        lambda: pbrf_train_base(problem, theta0, ds.x_train, ds.t_train, cfg.train, progress=bar),
    )
    h = config_hash(cfg, "train_base")
    train_loss = float(run.epoch_loss[-1]) if run.epoch_loss.numel() else float("nan")
    test_loss = float(eval_test_loss(problem, run.theta_s, ds.x_test, ds.t_test))
    meta = {"n_train": ds.n_train, "d": problem.spec.dim}
    save_checkpoint(
        layout.theta0,
        state_from_flat(problem, run.theta0),
        step="train_base",
        config_hash=h,
        meta=meta,
    )
    save_checkpoint(
        layout.theta_s,
        state_from_flat(problem, run.theta_s),
        step="train_base",
        config_hash=h,
        meta={**meta, "final_objective": train_loss, "test_loss_all": test_loss},
    )
    save_checkpoint(layout.orders, {"orders": run.orders}, step="train_base", config_hash=h)
    loss = run.epoch_loss.detach().double().cpu().flatten()
    write_table(
        layout.base_history,
        schemas.BASE_HISTORY,
        {"epoch": list(range(loss.numel())), "objective": loss.tolist()},
        step="train_base",
        config_hash=h,
    )
    return layout.outputs("train_base")
