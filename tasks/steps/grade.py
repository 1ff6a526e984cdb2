"""Step ``grade``: every influence estimator scored against the PBRF and its companions.

For each estimator of ``grade.estimators`` and each reference of ``grade.references``
(:mod:`pbrf.study.grading`), over the M removals: the Pearson and Spearman correlation between the
estimator's predicted test-loss change (Eq. 23) and the reference's — the actual change of the
horizon-matched PBRF (Eq. 8), the paper-setting PBRF, the linearized PBRF (Eq. 11) and cold-start
LOO retraining (all evaluated at θˢ + Δ in ``eval_dtype`` by the aggregate step), or the float64
exact damped solve's prediction — each with a 95 % BCa bootstrap interval over removals (2000
paired resamples, seed 0, as the decomposition's Table 2). Beside them: the estimator's wall time
and peak memory, the relative distance of its Δθ to the exact solve's, and, when the mislabel
study ran in this run, its detection AUC. Estimators are ranked by Spearman against
``grade.rank_by`` (the PBRF by default): the question influence functions answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from pbrf.stats import bootstrap_correlation
from pbrf.study.grading import EXACT, references
from tasks import schemas
from tasks.engine.context import StepContext
from tasks.registry import MISLABEL_ARTIFACT
from tasks.reports.grade_report import ranking_figure

RESAMPLES, LEVEL = 2000, 0.95  # as the decomposition's correlations (tasks.steps.aggregate)


def grade(ctx: StepContext) -> None:
    cfg = ctx.cfg
    refs = references(cfg)
    changes = ctx.read_table("test_loss_changes", schemas.TEST_LOSS_CHANGES)
    wide = changes.pivot(index="removal_id", columns="source", values="test_loss_change")
    predictions: dict[str, np.ndarray] = {}
    costs: dict[str, dict[str, Any]] = {}
    for node, df in ctx.read_tables("estimate_removals", schemas.ESTIMATE_REMOVALS):
        name = str(node.params["estimator"])
        df = df.sort_values("removal_id")
        predictions[name] = df["predicted_test_loss_change"].to_numpy(dtype=np.float64, copy=True)
        costs[name] = _cost(ctx, node)
    targets = {r: _reference(r, wide, predictions) for r in refs}
    errors = _response_errors(ctx, costs)
    auc = _mislabel_auc(ctx)

    rows: list[dict[str, Any]] = []
    for name in cfg.grade.estimators:
        for ref in refs:
            if name == ref:  # the exact solve against itself
                continue
            row = {"experiment": cfg.name, "estimator": name, "reference": ref}
            row.update(correlations(predictions[name], targets[ref]))
            cost = costs[name]
            row.update(
                n=len(predictions[name]),
                calibrated=bool(cost["calibrated"]),
                response_rel_error=errors.get(name),
                wall_time_s=cost["wall_time_s"],
                peak_memory_mb=cost["peak_memory_mb"],
                load_average=cost["load_average"],
                dtype=cost["dtype"],
                mislabel_auc=auc.get(name),
                failed=bool(cost["failed"]),
                message=cost["message"] or "",
            )
            rows.append(row)
    table = pd.DataFrame(rows)
    table["rank"] = _ranks(table, cfg.grade.rank_by)
    cols = [f.name for f in schemas.GRADES.schema]
    ctx.write_table("grades", schemas.GRADES, {c: table[c].tolist() for c in cols})
    ranking_figure(table, cfg.grade.rank_by, cfg.name, ctx.output_path("grade_ranking"))


def correlations(pred: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman with 95 % BCa bootstrap intervals (NaN when undefined)."""
    out: dict[str, float] = {}
    finite = bool(np.isfinite(pred).all() and np.isfinite(actual).all())
    for method in ("pearson", "spearman"):
        if finite:
            ci = bootstrap_correlation(
                pred, actual, method=method, resamples=RESAMPLES, level=LEVEL, seed=0
            )
            values = (ci.estimate, ci.low, ci.high)
        else:
            values = (math.nan, math.nan, math.nan)
        out[method], out[f"{method}_low"], out[f"{method}_high"] = values
    return out


def _reference(ref: str, wide: pd.DataFrame, predictions: dict[str, np.ndarray]) -> np.ndarray:
    if ref == EXACT:
        return predictions[EXACT]
    return wide[ref].sort_index().to_numpy(dtype=np.float64, copy=True)


def _ranks(table: pd.DataFrame, rank_by: str) -> list[int]:
    """1 = the highest Spearman against ``rank_by`` (ties: higher Pearson); NaN ranks last."""
    key = table[table["reference"] == rank_by].set_index("estimator")
    names = list(dict.fromkeys(table["estimator"]))
    score = {
        n: (
            _or(key["spearman"].get(n), -math.inf),
            _or(key["pearson"].get(n), -math.inf),
        )
        for n in names
    }
    order = sorted(names, key=lambda n: score[n], reverse=True)
    rank = {n: i + 1 for i, n in enumerate(order)}
    return [rank[n] for n in table["estimator"]]


def _or(value: Any, default: float) -> float:
    return default if value is None or not math.isfinite(float(value)) else float(value)


def _cost(ctx: StepContext, node: Any) -> dict[str, Any]:
    return ctx.read_table("estimate_cost", schemas.ESTIMATE_COST, node).iloc[0].to_dict()


def _response_errors(ctx: StepContext, costs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """‖Δθ − Δθ_exact‖_F / ‖Δθ_exact‖_F (float64) for every estimator that defines Δθ."""
    nodes = {str(n.params["estimator"]): n for n in ctx.producers("estimate_delta")}
    if EXACT not in nodes or not costs[EXACT]["has_response"]:
        return {}

    def flat(name: str) -> torch.Tensor:
        sd = ctx.load_checkpoint("estimate_delta", nodes[name]).state_dict
        return torch.cat([v.reshape(v.shape[0], -1) for v in sd.values()], dim=1).double()

    ref = flat(EXACT)
    norm = float(ref.norm())
    out = {}
    for name, cost in costs.items():
        if name != EXACT and cost["has_response"] and norm > 0:
            out[name] = float((flat(name) - ref).norm()) / norm
    return out


def _mislabel_auc(ctx: StepContext) -> dict[str, float]:
    """The mislabel study's AUC per estimator, when a step of this run produced one."""
    if not any(key.startswith(f"{MISLABEL_ARTIFACT}[") for key in ctx.node.inputs):
        return {}
    mislabel = getattr(ctx.cfg, "mislabel", None)
    solver = getattr(mislabel, "solver", None)
    graded = {n: s.model_dump(mode="json") for n, s in ctx.cfg.grade.estimators.items()}
    out: dict[str, float] = {}
    for node in ctx.producers(MISLABEL_ARTIFACT):
        table = pd.read_parquet(ctx.root / node.outputs[MISLABEL_ARTIFACT])
        dump = None if solver is None else solver.model_dump(mode="json")
        out.update(mislabel_aucs(table, dump, graded))
    return out


def mislabel_aucs(
    table: pd.DataFrame, solver: dict[str, Any] | None, graded: dict[str, dict[str, Any]]
) -> dict[str, float]:
    """Estimator → AUC from the mislabel study's table (columns ``method``, ``auc``).

    The study ranks the training examples by self-influence with one solver
    (``mislabel.solver``; its row is ``method == "influence"``): that AUC belongs to the graded
    estimator of the same name only when its settings are the solver's, else to none.
    """
    rows = table[table["method"] == "influence"]
    if solver is None or rows.empty:
        return {}
    name = solver.get("name")
    if name in graded and graded[name] == solver:
        return {str(name): float(rows["auc"].iloc[0])}
    return {}
