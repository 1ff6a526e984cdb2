"""Step ``retrain``: one variant of Table 1 for all M removals at once (vectorized in ``pbrf``)."""

from __future__ import annotations

from pathlib import Path

import torch

from pbrf.config import StudyConfig
from pbrf.influence import eval_test_loss
from pbrf.responses import retrain as pbrf_retrain
from pbrf.responses import total_epochs
from pbrf.trainer import TrainResult
from tasks import schemas
from tasks.artifacts import remove_stale_temps, save_checkpoint, write_table
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout
from tasks.runtime import (
    EpochBar,
    build_problem,
    forward_ad_section,
    load_base_run,
    load_dataset_artifact,
    load_selection,
    removed_lists,
    state_from_flat,
    with_bar,
)

# variants whose objective uses forward-mode AD (torch.func.jvp): see forward_ad_section
FORWARD_AD_VARIANTS = frozenset({"linearized_pbrf"})


def retrain(out: Path | str, cfg: StudyConfig, variant: str) -> list[Path]:
    """Write ``retrain/<variant>/``: stacked optima, per-removal test losses, objective history.

    The M removals are trained as one vectorized run, or in ``retrain.shards`` consecutive
    chunks of removals (less memory; identical results, since stacked models are independent).
    """
    if variant not in cfg.retrain.variants:
        raise ValueError(
            f"variant {variant!r} is not in retrain.variants={list(cfg.retrain.variants)}"
        )
    layout = RunLayout(out)
    remove_stale_temps(layout.variant_dir(variant))
    ds = load_dataset_artifact(layout, cfg)
    problem, _ = build_problem(cfg, ds)
    base = load_base_run(layout, problem, cfg)
    sel = load_selection(layout, cfg)
    removed = sel.removed.to(cfg.device)

    epochs = total_epochs(cfg.train, cfg.retrain, variant)
    with forward_ad_section(variant in FORWARD_AD_VARIANTS):
        results = _train_shards(variant, cfg, problem, base, ds, removed, epochs)
    theta = torch.cat([r.theta for r in results])
    history = torch.cat([r.epoch_loss for r in results], dim=1)  # (epochs, M)

    test = sel.test_index.to(ds.x_test.device)
    x_test, t_test = ds.x_test[test], ds.t_test[test]
    base_loss = float(eval_test_loss(problem, base.theta_s, x_test, t_test))
    losses = eval_test_loss(problem, theta, x_test, t_test).double().cpu()
    m = theta.shape[0]
    h = config_hash(cfg, "retrain")
    save_checkpoint(
        layout.variant_params(variant),
        state_from_flat(problem, theta),
        step="retrain",
        config_hash=h,
        meta={"variant": variant, "num_removals": m, "epsilon": 1.0 / ds.n_train},
    )
    final = history[-1].double().cpu() if history.shape[0] else torch.full((m,), float("nan"))
    write_table(
        layout.variant_removals(variant),
        schemas.VARIANT_REMOVALS,
        {
            "variant": [variant] * m,
            "removal_id": list(range(m)),
            "removed_indices": removed_lists(sel.removed),
            "base_test_loss": [base_loss] * m,
            "test_loss": losses.tolist(),
            "test_loss_change": (losses - base_loss).tolist(),
            "final_objective": final.tolist(),
        },
        step="retrain",
        config_hash=h,
    )
    e, _ = history.shape
    write_table(
        layout.variant_history(variant),
        schemas.VARIANT_HISTORY,
        {
            "variant": [variant] * (e * m),
            "epoch": [i for i in range(e) for _ in range(m)],
            "removal_id": [j for _ in range(e) for j in range(m)],
            "objective": history.double().cpu().flatten().tolist(),
        },
        step="retrain",
        config_hash=h,
    )
    return layout.outputs("retrain", variant)


def _train_shards(variant, cfg, problem, base, ds, removed, epochs) -> list[TrainResult]:
    results: list[TrainResult] = []
    for shard in torch.tensor_split(removed, cfg.retrain.shards):
        bar = EpochBar(f"retrain {variant}", epochs)
        results.append(
            with_bar(
                bar,
                lambda shard=shard, bar=bar: pbrf_retrain(
                    variant,
                    problem,
                    base,
                    ds.x_train,
                    ds.t_train,
                    shard,
                    train=cfg.train,
                    retrain=cfg.retrain,
                    damping=cfg.damping,
                    progress=bar,
                ),
            )
        )
    return results
