"""Step ``estimate``: one influence estimator on the study's θˢ, removals and test points.

Every estimator of ``grade.estimators`` is its own node, so the Prefect flow runs them as
parallel tasks and a changed setting reruns only its estimator. Conventions are the
:mod:`pbrf.estimators` interface's: ``ε = 1/N``, ``Δθ = ε (G + λI)⁻¹ g_S`` (Eq. 10) with the
study's damping λ and curvature, ``ΔL = ∇L_testᵀ Δθ`` (Eq. 23) over the study's P test points,
positive when removing S increases the test loss. Estimators run in the training dtype, except
``exact``, the reference, which runs entirely in float64.

Wall time and peak memory are measured around the estimator call alone
(:func:`pbrf.estimators.run_estimator`), after an untimed warm-up of ``torch.func`` and, for
K-FAC/EK-FAC, of kronfluence's import. A known failure of the method (a precondition it
rejects, a missing package, a diverging or indefinite solve, running out of memory) is recorded
as NaN predictions with the message, so one estimator cannot sink the grading of the others.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from pbrf.estimators.base import Estimate, EstimatorInputs
from pbrf.estimators.registry import run_estimator
from pbrf.losses import get_loss
from pbrf.models import build_from_options
from pbrf.params import load_flat_
from pbrf.problem import Problem
from pbrf.solvers.errors import LissaDivergenceError, NotPositiveDefiniteError
from tasks import schemas
from tasks.engine.context import StepContext
from tasks.steps.checkpoints import load_tracin_checkpoints
from tasks.steps.runtime import (
    load_data,
    load_selection,
    load_theta,
    removed_lists,
    state,
    torch_dtype,
)

REFERENCE_DTYPE = "float64"  # the exact solve is the reference: no float32 anywhere in it
KNOWN_FAILURES = (
    ValueError,
    ImportError,
    MemoryError,
    torch.OutOfMemoryError,
    LissaDivergenceError,
    NotPositiveDefiniteError,
)
KRONFLUENCE = ("kfac", "ekfac")


def estimator_dtype(cfg: Any, name: str) -> str:
    return REFERENCE_DTYPE if name == "exact" else cfg.dtype


def build_module_problem(cfg: Any, ds: Any, dtype: str) -> tuple[Problem, nn.Module]:
    """The study's network (an ``nn.Module``, which K-FAC/EK-FAC need) and its problem."""
    module = build_from_options(cfg.model, input_shape=ds.input_shape, output_dim=ds.output_dim).to(
        device=cfg.device, dtype=torch_dtype(dtype)
    )
    loss = get_loss(cfg.loss_name(ds.default_loss))
    return Problem.from_module(module, loss, weight_decay=cfg.train.weight_decay), module


def estimate(ctx: StepContext) -> None:
    """Write the estimator's ΔL and self-influence per removal, its Δθ (stacked state dict;
    empty when the estimator defines none) and its cost."""
    cfg = ctx.cfg
    name = str(ctx.params["estimator"])
    settings = cfg.grade.estimators[name]
    dtype = estimator_dtype(cfg, name)
    ds = load_data(ctx, dtype)
    problem, module = build_module_problem(cfg, ds, dtype)
    theta_s = load_theta(ctx, problem, "theta_s", dtype)
    load_flat_(module, theta_s)
    sel = load_selection(ctx)
    test = sel.test_index.to(ds.x_test.device)
    checkpoints, batch = (), cfg.train.batch_size
    if name == "tracin":
        checkpoints, batch = load_tracin_checkpoints(ctx, problem, dtype)
    inputs = EstimatorInputs(
        problem=problem,
        theta=theta_s,
        x_train=ds.x_train,
        t_train=ds.t_train,
        removed=sel.removed.to(ds.x_train.device),
        x_test=ds.x_test[test],
        t_test=ds.t_test[test],
        damping=cfg.damping,
        curvature=cfg.influence.curvature,
        checkpoints=checkpoints,
        train_batch_size=batch,
        module=module,
    )
    failure = ""
    try:
        _warm_up(name, inputs)
        est = run_estimator(settings, inputs)
    except KNOWN_FAILURES as exc:
        failure = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ctx.warn(f"estimator {name} failed: {failure}")
        est = _failed(name, inputs)
    messages = [str(w) for w in est.info.get("warnings", []) or []]
    for w in messages:
        ctx.warn(f"estimator {name}: {w}")
    m = inputs.num_removals
    response = est.param_response
    has_response = response is not None and not failure
    delta = response if has_response else torch.empty(0, theta_s.numel(), dtype=theta_s.dtype)
    ctx.save_checkpoint(
        "estimate_delta",
        state(problem, delta),
        meta={"estimator": name, "epsilon": inputs.eps, "dtype": dtype, "defined": has_response},
    )
    selfinf = est.self_influence
    ctx.write_table(
        "estimate_removals",
        schemas.ESTIMATE_REMOVALS,
        {
            "removal_id": list(range(m)),
            "removed_indices": removed_lists(sel.removed),
            "predicted_test_loss_change": est.predicted_change.detach().double().cpu().tolist(),
            "self_influence": [None] * m
            if selfinf is None
            else selfinf.detach().double().cpu().tolist(),
        },
    )
    info = {
        k: v
        for k, v in est.info.items()
        if k not in ("warnings", "settings", "wall_time_s", "peak_memory_mb", "memory_method")
    }
    ctx.write_table(
        "estimate_cost",
        schemas.ESTIMATE_COST,
        {
            "estimator": [name],
            "settings": [json.dumps(settings.model_dump(mode="json"), sort_keys=True)],
            "dtype": [dtype],
            "calibrated": [bool(est.calibrated)],
            "has_response": [has_response],
            "wall_time_s": [_num(est.info.get("wall_time_s"))],
            "peak_memory_mb": [_num(est.info.get("peak_memory_mb"))],
            "memory_method": [est.info.get("memory_method")],
            "load_average": [os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
            "threads": [torch.get_num_threads()],
            "device": [cfg.device],
            "converged": [bool(est.info.get("converged", True)) and not failure],
            "failed": [bool(failure)],
            "message": ["; ".join([failure, *messages] if failure else messages)],
            "info": [json.dumps(info, sort_keys=True, default=_jsonable)],
        },
    )


def _warm_up(name: str, inputs: EstimatorInputs) -> None:
    """First ``torch.func`` calls and kronfluence's import are one-off costs: pay them untimed."""
    if name in KRONFLUENCE:
        importlib.import_module("kronfluence.analyzer")
    small = replace(inputs, removed=inputs.removed[:1], x_test=inputs.x_test[:1],
                    t_test=inputs.t_test[:1], checkpoints=())  # fmt: skip
    run_estimator({"name": "grad_dot"}, small)


def _failed(name: str, inputs: EstimatorInputs) -> Estimate:
    nan = torch.full((inputs.num_removals,), math.nan, dtype=torch.float64)
    return Estimate(name=name, predicted_change=nan, info={"converged": False})


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)
