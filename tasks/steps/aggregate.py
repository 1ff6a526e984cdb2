"""Step ``aggregate``: gaps (Table 5), correlations (Table 2) with intervals, horizons,
precision and convergence — every number the report shows, computed once.

All evaluations happen in ``eval_dtype`` (float64 by default) at θ = θˢ + Δ, with Δ the stored
displacement of each response, so a test-loss change of 1e-7 on a loss of 0.1 is resolved
instead of being ten float32 rounding units.

Gaps (Appendix E.2), each the mean output distance E_x‖f(θ_a, x) − f(θ_b, x)‖ over the training
inputs, per removal, then mean ± std and a bootstrap interval over the M removals:

==================  =================  ==================
gap                 θ_a                θ_b
==================  =================  ==================
warm_start          cold               warm
proximity           warm               proximal
non_convergence     proximal           pbrf
linearization       pbrf               linearized_pbrf
solver              linearized_pbrf    influence (θ_IF)
==================  =================  ==================

The chain above runs through this project's horizon-matched PBRF. The paper trained its PBRF
and linearized PBRF for K/2 epochs at lr/10 (Appendix E.2); the same three gaps through those
(``pbrf_paper``, ``linearized_pbrf_paper``) are ``non_convergence_paper``,
``linearization_paper`` and ``solver_paper`` — the like of the paper's Table 5 numbers.
A gap is skipped when one of its two sources was not run (``retrain.variants``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pbrf.metrics import eval_test_loss, output_distance, output_norm
from pbrf.precision import loss_change_ulps, response_ulps, vanishing_fraction
from pbrf.responses import (
    PAPER_SETTING,
    continuation_lr,
    lissa_horizon,
    steps_per_epoch,
)
from pbrf.stats import bootstrap_correlation, bootstrap_mean, jackknife_correlation
from pbrf.study.schedules import schedule_horizon, variant_schedule
from tasks import schemas
from tasks.engine.context import StepContext
from tasks.steps.retrain import WARN_STILL_FALLING, falling_message
from tasks.steps.runtime import (
    build_problem,
    flat,
    load_data,
    load_selection,
    load_theta,
    torch_dtype,
)

GAP_CHAIN: tuple[tuple[str, str, str], ...] = (
    ("warm_start", "cold", "warm"),
    ("proximity", "warm", "proximal"),
    ("non_convergence", "proximal", "pbrf"),
    ("linearization", "pbrf", "linearized_pbrf"),
    ("solver", "linearized_pbrf", "influence"),
    ("non_convergence_paper", "proximal", "pbrf_paper"),
    ("linearization_paper", "pbrf_paper", "linearized_pbrf_paper"),
    ("solver_paper", "linearized_pbrf_paper", "influence"),
)
HORIZON_TOLERANCE = 3.0
FLOOR_ULPS = 10.0  # a loss change below this many rounding units of the loss is noise
RESAMPLES, LEVEL = 2000, 0.95


def aggregate(ctx: StepContext) -> None:
    cfg = ctx.cfg
    ev = cfg.eval_dtype
    ds = load_data(ctx, ev)
    problem, _ = build_problem(cfg, ds, ev)
    theta_s = load_theta(ctx, problem, "theta_s", ev)
    sel = load_selection(ctx)
    m = sel.removed.shape[0]
    deltas = _deltas(ctx, problem, m)
    test = sel.test_index.to(ds.x_test.device)
    x_test, t_test = ds.x_test[test], ds.t_test[test]
    base_loss = float(eval_test_loss(problem, theta_s, x_test, t_test))
    changes = {
        src: (eval_test_loss(problem, theta_s[None] + d, x_test, t_test) - base_loss).double().cpu()
        for src, d in deltas.items()
    }
    inf = ctx.read_table("influence_removals", schemas.INFLUENCE_REMOVALS).sort_values("removal_id")
    predicted = torch.tensor(inf["predicted_test_loss_change"].tolist(), dtype=torch.float64)
    solver = ctx.read_table("solver", schemas.SOLVER).iloc[0].to_dict()

    _write_gaps(ctx, problem, theta_s, deltas, ds.x_train, m)
    _write_correlations(ctx, predicted, changes, base_loss)
    _write_horizons(ctx, solver, ds.n_train)
    _write_precision(ctx, theta_s, deltas, changes, predicted, base_loss)
    _write_convergence(ctx, solver)


def _deltas(ctx: StepContext, problem, m: int) -> dict[str, Tensor]:
    """Δ (M, d) of every variant (shards stitched in removal order) and of influence."""
    cfg, ev = ctx.cfg, ctx.cfg.eval_dtype
    out: dict[str, Tensor] = {}
    for v in cfg.retrain.variants:
        parts = [n for n in ctx.producers("variant_delta") if n.params["variant"] == v]
        d = torch.empty(m, problem.spec.dim, dtype=torch_dtype(ev), device=cfg.device)
        for node in parts:
            ck = ctx.load_checkpoint("variant_delta", node)
            d[ck.meta["removal_ids"]] = flat(problem, ck.state_dict, cfg, ev)
        out[v] = d
    ck = ctx.load_checkpoint("influence_delta")
    out["influence"] = flat(problem, ck.state_dict, cfg, ev)
    return out


# --------------------------------------------------------------------------- gaps


def _write_gaps(ctx, problem, theta_s, deltas, x_train, m) -> None:
    per = {k: [] for k in ("gap", "removal_id", "reference_a", "reference_b", "distance")}
    keys = (
        "experiment",
        "gap",
        "reference_a",
        "reference_b",
        "mean",
        "std",
        "ci_low",
        "ci_high",
        "n",
        "output_scale",
    )
    rows = {k: [] for k in keys}
    scale = float(output_norm(problem.f, theta_s, x_train))
    for gap, a, b in GAP_CHAIN:
        if a not in deltas or b not in deltas:
            continue
        # f(θˢ + Δa) − f(θˢ + Δb): both displacements enter at eval precision
        dist = output_distance(problem.f, theta_s + deltas[a], theta_s + deltas[b], x_train)
        dist = dist.double().cpu()
        per["gap"] += [gap] * m
        per["removal_id"] += list(range(m))
        per["reference_a"] += [a] * m
        per["reference_b"] += [b] * m
        per["distance"] += dist.tolist()
        ci = bootstrap_mean(dist.numpy(), resamples=RESAMPLES, level=LEVEL, seed=0)
        std = float(dist.std(unbiased=True)) if m > 1 else 0.0
        values = (ctx.cfg.name, gap, a, b, float(dist.mean()), std, ci.low, ci.high, m, scale)
        for key, value in zip(keys, values, strict=True):
            rows[key].append(value)
    ctx.write_table("gaps_per_removal", schemas.GAPS_PER_REMOVAL, per)
    ctx.write_table("gaps", schemas.GAPS, rows)


# --------------------------------------------------------------------------- correlations


def _write_correlations(ctx, predicted: Tensor, changes: dict[str, Tensor], base_loss) -> None:
    cols = [f.name for f in schemas.CORRELATIONS.schema]
    rows = {k: [] for k in cols}
    long = {"removal_id": [], "source": [], "test_loss_change": []}
    sources = {"influence": predicted, "influence_params": changes["influence"]}
    sources.update({v: c for v, c in changes.items() if v != "influence"})
    for source, values in sources.items():
        long["removal_id"] += list(range(len(values)))
        long["source"] += [source] * len(values)
        long["test_loss_change"] += values.tolist()
    floor_dtype = torch_dtype(ctx.cfg.eval_dtype)
    pred = predicted.numpy()
    for ref, values in sources.items():
        if ref == "influence":
            continue
        actual = values.numpy()
        row = _correlation_row(pred, actual)
        ulps = loss_change_ulps(values, base_loss, floor_dtype)
        row.update(
            experiment=ctx.cfg.name,
            reference=ref,
            n=len(actual),
            at_rounding_floor=bool(float(ulps.median()) < FLOOR_ULPS),
        )
        for k in cols:
            rows[k].append(row[k])
    ctx.write_table("correlations", schemas.CORRELATIONS, rows)
    ctx.write_table("test_loss_changes", schemas.TEST_LOSS_CHANGES, long)


def _correlation_row(pred: np.ndarray, actual: np.ndarray) -> dict:
    row: dict = {}
    for method in ("pearson", "spearman"):
        ci = bootstrap_correlation(
            pred, actual, method=method, resamples=RESAMPLES, level=LEVEL, seed=0
        )
        row[method], row[f"{method}_low"], row[f"{method}_high"] = ci.estimate, ci.low, ci.high
        if len(pred) >= 3:
            jk = jackknife_correlation(pred, actual, method=method)
            row[f"{method}_jackknife_removal"] = (
                jk.most_influential if jk.most_influential >= 0 else None
            )
            row[f"{method}_jackknife_change"] = jk.change
        else:
            row[f"{method}_jackknife_removal"] = None
            row[f"{method}_jackknife_change"] = math.nan
    return row


# --------------------------------------------------------------------------- horizons


def _write_horizons(ctx, solver: dict, n_train: int) -> None:
    cfg = ctx.cfg
    depth, scale = _opt(solver.get("depth")), _opt(solver.get("scale"))
    lissa_h = lissa_horizon(int(depth), float(scale)) if depth and scale else None
    cols = [f.name for f in schemas.HORIZONS.schema]
    rows = {k: [] for k in cols}
    for v in ("pbrf", "linearized_pbrf", "pbrf_paper", "linearized_pbrf_paper"):
        if v not in cfg.retrain.variants:
            continue
        schedule = variant_schedule(cfg, v, n_train, lissa_h)
        setting = "paper" if v in PAPER_SETTING else cfg.retrain.pbrf.horizon
        h = schedule_horizon(cfg, schedule, n_train)
        lr = continuation_lr(cfg.train)
        ratio = max(h, lissa_h) / min(h, lissa_h) if h and lissa_h else None
        mismatch = bool(ratio is not None and ratio > HORIZON_TOLERANCE)
        row = {
            "variant": v,
            "setting": setting,
            "lr": lr * schedule.lr_factor if lr is not None else None,
            "epochs": schedule.epochs,
            "steps": schedule.epochs * steps_per_epoch(n_train, cfg.train.batch_size),
            "horizon": h,
            "lissa_horizon": lissa_h,
            "ratio": ratio,
            "mismatch": mismatch,
            "message": _horizon_message(v, setting, h, lissa_h, ratio, mismatch, cfg),
        }
        for k in cols:
            rows[k].append(row[k])
    ctx.write_table("horizons", schemas.HORIZONS, rows)


def _horizon_message(v, setting, h, lissa_h, ratio, mismatch, cfg) -> str:
    if cfg.train.optimizer.name == "lbfgs":
        return f"{v}: minimized to convergence with L-BFGS (no finite horizon)"
    if lissa_h is None:
        return f"{v}: no LiSSA horizon (influence.solver.name={cfg.influence.solver.name})"
    if h is None:
        return f"{v}: no horizon (train.optimizer.name={cfg.train.optimizer.name})"
    text = f"{v} ({setting}): η·S = {h:.4g} vs LiSSA T/σ = {lissa_h:.4g}"
    if not mismatch:
        return f"{text}, matched within {ratio:.2f}×"
    if setting == "paper":
        return f"{text}, {ratio:.1f}× apart (the paper's setting; see docs/method.md)"
    return (
        f"{text}: WARNING, {ratio:.1f}× apart (> {HORIZON_TOLERANCE:g}×), so influence and this "
        "PBRF resolve different curvature directions (docs/method.md)"
    )


def _opt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


# --------------------------------------------------------------------------- precision


def _write_precision(ctx, theta_s, deltas, changes, predicted, base_loss) -> None:
    train_dtype = torch_dtype(ctx.cfg.dtype)
    cols = [f.name for f in schemas.PRECISION.schema]
    rows = {k: [] for k in cols}
    for src, d in deltas.items():
        ulps = response_ulps(theta_s, d, train_dtype)
        vanish = vanishing_fraction(theta_s, d, train_dtype)
        change = predicted if src == "influence" else changes[src]
        loss_ulps = loss_change_ulps(change, base_loss, train_dtype)
        med = float(loss_ulps.median())
        row = {
            "source": src,
            "train_dtype": ctx.cfg.dtype,
            "min_response_ulps": float(ulps.min()),
            "max_vanishing_fraction": float(vanish.max()),
            "median_loss_change_ulps": med,
            "at_rounding_floor": med < FLOOR_ULPS,
        }
        for k in cols:
            rows[k].append(row[k])
    ctx.write_table("precision", schemas.PRECISION, rows)


# --------------------------------------------------------------------------- convergence


def _write_convergence(ctx, solver: dict) -> None:
    cols = [f.name for f in schemas.CONVERGENCE.schema]
    rows = {k: [] for k in cols}
    for v in ctx.cfg.retrain.variants:
        parts = [
            df
            for node, df in ctx.read_tables("variant_removals", schemas.VARIANT_REMOVALS)
            if node.params["variant"] == v
        ]
        tab = pd.concat(parts, ignore_index=True)
        tails = tab["tail_decrease"].astype(float)
        falling = int(tab["still_decreasing"].astype(bool).sum())
        conv = tab["converged"].dropna()
        unconverged = int((~conv.astype(bool)).sum()) if len(conv) else 0
        msg = []
        if falling and v in WARN_STILL_FALLING:
            msg.append(falling_message(float(np.nanmax(tails.to_numpy())), falling, len(tab)))
        if unconverged:
            msg.append(f"L-BFGS unconverged for {unconverged} of {len(tab)} removals")
        env = ctx.load_checkpoint("variant_delta", _first(ctx, v)).env
        row = {
            "source": v,
            "threads": env.get("threads"),
            "device": env.get("device"),
            "epochs": int(tab["epochs"].max()),
            "max_tail_decrease": float(np.nanmax(tails.to_numpy()))
            if tails.notna().any()
            else None,
            "still_decreasing": falling,
            "unconverged": unconverged,
            "message": "; ".join(msg),
        }
        for k in cols:
            rows[k].append(row[k])
    warn = solver.get("warnings") or ""
    env = ctx.load_checkpoint("influence_delta").env
    row = {
        "source": "solver",
        "threads": env.get("threads"),
        "device": env.get("device"),
        "epochs": _opt(solver.get("iterations")) or _opt(solver.get("depth")),
        "max_tail_decrease": None,
        "still_decreasing": 0,
        "unconverged": 0 if bool(solver.get("converged", True)) else 1,
        "message": warn,
    }
    for k in cols:
        rows[k].append(row[k])
    ctx.write_table("convergence", schemas.CONVERGENCE, rows)


def _first(ctx: StepContext, variant: str):
    return next(n for n in ctx.producers("variant_delta") if n.params["variant"] == variant)
