"""Step ``aggregate``: the five gaps (Table 5), test-loss correlations (Table 2), horizons.

Gaps (Appendix E.2), each the mean output distance E_x‖f(θ_a, x) − f(θ_b, x)‖ over the training
inputs, per removal, then mean ± std over the M removals:

==================  =================  ==================
gap                 θ_a                θ_b
==================  =================  ==================
warm_start          cold               warm
proximity           warm               proximal
non_convergence     proximal           pbrf
linearization       pbrf               linearized_pbrf
solver              linearized_pbrf    influence (θ_IF)
==================  =================  ==================

A gap is skipped when one of its two sources was not run (``retrain.variants``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from pbrf.config import StudyConfig
from pbrf.metrics import output_distance, output_norm, pearson, spearman
from pbrf.responses import pbrf_horizon, pbrf_steps, variant_lr
from tasks import schemas
from tasks.artifacts import load_checkpoint, read_table, remove_stale_temps, write_table
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout
from tasks.runtime import build_problem, flat_from_state, load_dataset_artifact, load_theta

GAP_CHAIN: tuple[tuple[str, str, str], ...] = (
    ("warm_start", "cold", "warm"),
    ("proximity", "warm", "proximal"),
    ("non_convergence", "proximal", "pbrf"),
    ("linearization", "pbrf", "linearized_pbrf"),
    ("solver", "linearized_pbrf", "influence"),
)
HORIZON_TOLERANCE = 3.0


def aggregate(out: Path | str, cfg: StudyConfig) -> list[Path]:
    layout = RunLayout(out)
    remove_stale_temps(layout.aggregate_dir)
    ds = load_dataset_artifact(layout, cfg)
    problem, _ = build_problem(cfg, ds)
    h_retrain, h_inf = config_hash(cfg, "retrain"), config_hash(cfg, "influence")

    thetas: dict[str, torch.Tensor] = {}
    changes: dict[str, list[float]] = {}
    for v in cfg.retrain.variants:
        ck = load_checkpoint(layout.variant_params(v), step="retrain", config_hash=h_retrain)
        thetas[v] = flat_from_state(problem, ck.state_dict, cfg)
        tab = read_table(
            layout.variant_removals(v),
            schemas.VARIANT_REMOVALS,
            step="retrain",
            config_hash=h_retrain,
        ).sort_values("removal_id")
        changes[v] = tab["test_loss_change"].tolist()
    ck = load_checkpoint(layout.influence_params, step="influence", config_hash=h_inf)
    thetas["influence"] = flat_from_state(problem, ck.state_dict, cfg)
    inf = read_table(
        layout.influence_removals, schemas.INFLUENCE_REMOVALS, step="influence", config_hash=h_inf
    ).sort_values("removal_id")
    predicted = inf["predicted_test_loss_change"].tolist()
    solver = read_table(layout.solver, schemas.SOLVER, step="influence", config_hash=h_inf)
    m = len(predicted)

    h = config_hash(cfg, "aggregate")
    _write_gaps(layout, cfg, problem, thetas, ds.x_train, m, h)
    _write_correlations(layout, cfg, predicted, changes, h)
    _write_horizons(layout, cfg, solver.iloc[0].to_dict(), ds.n_train, h)
    return layout.outputs("aggregate")


def _write_gaps(layout, cfg, problem, thetas, x_train, m, h) -> None:
    per = {"gap": [], "removal_id": [], "reference_a": [], "reference_b": [], "distance": []}
    keys = ("experiment", "gap", "reference_a", "reference_b", "mean", "std", "n", "output_scale")
    rows = {k: [] for k in keys}
    scale = float(output_norm(problem.f, load_theta(layout, problem, cfg), x_train))
    for gap, a, b in GAP_CHAIN:
        if a not in thetas or b not in thetas:
            continue
        dist = output_distance(problem.f, thetas[a], thetas[b], x_train).double().cpu()
        per["gap"] += [gap] * m
        per["removal_id"] += list(range(m))
        per["reference_a"] += [a] * m
        per["reference_b"] += [b] * m
        per["distance"] += dist.tolist()
        for key, value in zip(
            rows,
            (cfg.name, gap, a, b, float(dist.mean()), _std(dist), m, scale),
            strict=True,
        ):
            rows[key].append(value)
    write_table(
        layout.aggregate("gaps_per_removal"),
        schemas.GAPS_PER_REMOVAL,
        per,
        step="aggregate",
        config_hash=h,
    )
    write_table(layout.aggregate("gaps"), schemas.GAPS, rows, step="aggregate", config_hash=h)


def _std(x: torch.Tensor) -> float:
    return float(x.std(unbiased=True)) if x.numel() > 1 else 0.0


def _write_correlations(layout, cfg, predicted, changes, h) -> None:
    pred = torch.tensor(predicted, dtype=torch.float64)
    rows = {k: [] for k in ("experiment", "reference", "pearson", "spearman", "n")}
    long = {"removal_id": [], "source": [], "test_loss_change": []}
    for source, values in [("influence", predicted), *changes.items()]:
        long["removal_id"] += list(range(len(values)))
        long["source"] += [source] * len(values)
        long["test_loss_change"] += list(values)
    for v, values in changes.items():
        actual = torch.tensor(values, dtype=torch.float64)
        ok = pred.numel() >= 2
        rows["experiment"].append(cfg.name)
        rows["reference"].append(v)
        rows["pearson"].append(pearson(pred, actual) if ok else math.nan)
        rows["spearman"].append(spearman(pred, actual) if ok else math.nan)
        rows["n"].append(int(pred.numel()))
    write_table(
        layout.aggregate("correlations"),
        schemas.CORRELATIONS,
        rows,
        step="aggregate",
        config_hash=h,
    )
    write_table(
        layout.aggregate("test_loss_changes"),
        schemas.TEST_LOSS_CHANGES,
        long,
        step="aggregate",
        config_hash=h,
    )


def horizons(cfg: StudyConfig, solver: dict, n_train: int) -> dict:
    """LiSSA's T/σ and the PBRF run's η·S, their ratio and a verdict (GUIDE §4)."""
    depth = _opt(solver.get("depth"), int)
    scale = _opt(solver.get("scale"), float)
    lissa_h = _opt(solver.get("horizon"), float)
    pbrf_h = pbrf_horizon(cfg.train, cfg.retrain, n_train)
    lr = variant_lr(cfg.train, cfg.retrain, "pbrf")
    steps = pbrf_steps(cfg.train, cfg.retrain, n_train)
    ratio, mismatch = None, False
    if lissa_h is None:
        message = f"no LiSSA horizon (influence.solver={cfg.influence.solver})"
    elif pbrf_h is None:
        message = f"no PBRF horizon (train.optimizer={cfg.train.optimizer} has no fixed step)"
    else:
        ratio = max(lissa_h, pbrf_h) / min(lissa_h, pbrf_h)
        mismatch = ratio > HORIZON_TOLERANCE
        verdict = (
            f"WARNING: they differ by {ratio:.1f}× (> {HORIZON_TOLERANCE:g}×), so influence and "
            "the PBRF resolve different curvature directions (GUIDE §4); match them via "
            "influence.depth/scale or retrain.pbrf_epochs/pbrf_lr_factor"
            if mismatch
            else f"matched within {ratio:.2f}×"
        )
        message = f"LiSSA T/σ = {lissa_h:.4g}, PBRF η·S = {pbrf_h:.4g}: {verdict}"
    return {
        "lissa_depth": depth,
        "lissa_scale": scale,
        "lissa_horizon": lissa_h,
        "pbrf_lr": lr if pbrf_h is not None else None,
        "pbrf_steps": steps if pbrf_h is not None else None,
        "pbrf_horizon": pbrf_h,
        "ratio": ratio,
        "mismatch": mismatch,
        "message": message,
    }


def _opt(value, cast):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return cast(value)


def _write_horizons(layout, cfg, solver, n_train, h) -> None:
    row = horizons(cfg, solver, n_train)
    write_table(
        layout.aggregate("horizons"),
        schemas.HORIZONS,
        {k: [v] for k, v in row.items()},
        step="aggregate",
        config_hash=h,
    )
