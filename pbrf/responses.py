"""Base training and the five retraining variants of Table 1 / Appendix E.2.

=================  ==========================================  ====  =========================
variant            objective                                   init  batches (epochs)
=================  ==========================================  ====  =========================
cold               Eq. 2  (removal by weight mask)             θ⁰    base order 0..K−1, then K..
warm               Eq. 2                                       θˢ    K..K+K/2−1
proximal           Eq. 7  (+ λ/2‖θ−θˢ‖²)                       θˢ    K..K+K/2−1
pbrf               Eq. 8  (Bregman, −εℓ_z, proximal)           θˢ    K.., lr × pbrf_lr_factor
linearized_pbrf    Eq. 11 (quadratic via jvp)                  θˢ    K.., lr × pbrf_lr_factor
=================  ==========================================  ====  =========================

With ``optimizer="lbfgs"`` every variant is minimized full-batch to convergence instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap

from pbrf.config import VARIANTS, RetrainConfig, TrainConfig
from pbrf.lbfgs import lbfgs_stacked
from pbrf.objectives import (
    Batch,
    downweighted_objective,
    linearized_pbrf_objective,
    pbrf_objective,
    proximal_objective,
    removal_weights,
)
from pbrf.problem import Problem
from pbrf.schedule import epoch_orders
from pbrf.trainer import (
    Progress,
    SGDSettings,
    StackedObjective,
    TrainResult,
    check_finite,
    train_stacked,
)

PBRF_VARIANTS = frozenset({"pbrf", "linearized_pbrf"})


@dataclass
class BaseRun:
    theta0: Tensor  # (d,) initialization θ⁰
    theta_s: Tensor  # (d,) trained parameters θˢ
    orders: Tensor  # (K, N) batch order of the base run (empty for L-BFGS)
    epoch_loss: Tensor  # (K,) or (iterations,)


def retrain_epochs(train: TrainConfig, retrain: RetrainConfig, variant: str) -> int:
    """Epochs a variant trains from θˢ (cold start trains K more on top)."""
    if variant in PBRF_VARIANTS and retrain.pbrf_epochs is not None:
        return retrain.pbrf_epochs
    return max(1, round(train.epochs * retrain.epochs_fraction))


def total_epochs(train: TrainConfig, retrain: RetrainConfig, variant: str) -> int:
    """Epochs (or L-BFGS iterations at most) one :func:`retrain` call of ``variant`` runs."""
    if train.optimizer == "lbfgs":
        return train.epochs
    extra = retrain_epochs(train, retrain, variant)
    return train.epochs + extra if variant == "cold" else extra


def variant_lr(train: TrainConfig, retrain: RetrainConfig, variant: str) -> float:
    return train.lr * (retrain.pbrf_lr_factor if variant in PBRF_VARIANTS else 1.0)


def pbrf_steps(train: TrainConfig, retrain: RetrainConfig, n: int) -> int:
    """Optimizer steps S of the PBRF run (epochs × steps per epoch)."""
    steps_per_epoch = 1 if train.batch_size is None else math.ceil(n / train.batch_size)
    return retrain_epochs(train, retrain, "pbrf") * steps_per_epoch


def pbrf_horizon(train: TrainConfig, retrain: RetrainConfig, n: int) -> float | None:
    """``η·S`` (÷(1−μ) with momentum) of the PBRF run: it resolves curvature above ~1/(ηS).

    ``None`` for Adam and L-BFGS, whose step is not a fixed multiple of the gradient.
    """
    if train.optimizer in ("adam", "lbfgs"):
        return None
    lr = variant_lr(train, retrain, "pbrf")
    momentum = 1 - train.momentum if train.optimizer == "momentum" else 1.0
    return lr * pbrf_steps(train, retrain, n) / momentum


def variant_objective(
    variant: str, problem: Problem, theta_s: Tensor, epsilon: float, damping: float
) -> tuple[StackedObjective, bool, Callable[[Batch], Batch] | None]:
    """``(objective, mask_removed, prepare)`` for ``variant`` (see the module table)."""

    def downweighted(th: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return downweighted_objective(problem, th, b, w)

    def proximal(th: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return proximal_objective(problem, th, b, w, theta_s, damping)

    def bregman(th: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return pbrf_objective(problem, th, b, rx, rt, theta_s, epsilon, damping)

    def linearized(th: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return linearized_pbrf_objective(problem, th, b, rx, rt, theta_s, epsilon, damping)

    def with_anchor_outputs(batch: Batch) -> Batch:
        with torch.no_grad():
            return batch._replace(anchor_outputs=problem.f(theta_s, batch.x))

    table = {
        "cold": (downweighted, True, None),
        "warm": (downweighted, True, None),
        "proximal": (proximal, True, None),
        "pbrf": (bregman, False, with_anchor_outputs),
        "linearized_pbrf": (linearized, False, None),
    }
    if variant not in table:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    return table[variant]


def _sgd_settings(train: TrainConfig, lr: float) -> SGDSettings:
    return SGDSettings(
        optimizer=train.optimizer,
        lr=lr,
        momentum=train.momentum,
        batch_size=train.batch_size,
        lr_milestones=tuple(train.lr_milestones),
        lr_gamma=train.lr_gamma,
    )


def _lbfgs(
    objective: StackedObjective,
    theta0: Tensor,
    x: Tensor,
    t: Tensor,
    removed: Tensor,
    epsilon: float,
    mask_removed: bool,
    prepare: Callable[[Batch], Batch] | None,
    train: TrainConfig,
    label: str,
    progress: Progress | None,
) -> TrainResult:
    n = x.shape[0]
    batch = Batch(x, t, n)
    if prepare is not None:
        batch = prepare(batch)
    removed = removed.to(x.device)
    rx, rt = x[removed], t[removed]
    idx = torch.arange(n, device=x.device)
    w = (
        removal_weights(idx, removed, n, epsilon)
        if mask_removed
        else torch.ones(theta0.shape[0], n, device=x.device)
    )
    w = w.to(theta0.dtype)

    def one(th: Tensor, w_m: Tensor, rx_m: Tensor, rt_m: Tensor) -> Tensor:
        return objective(th, batch, w_m, rx_m, rt_m)

    gv = vmap(grad_and_value(one))
    val = vmap(one)
    res = lbfgs_stacked(
        lambda th: gv(th, w, rx, rt),
        lambda th: val(th, w, rx, rt),
        theta0,
        max_iter=train.epochs,
        history=train.lbfgs_history,
        tol_grad=train.lbfgs_tol,
        progress=progress,
    )
    check_finite(res.value, label=label, epoch=int(res.iterations.max()), lr=None)
    return TrainResult(theta=res.theta, epoch_loss=res.value[None])


def train_base(
    problem: Problem,
    theta0: Tensor,
    x: Tensor,
    t: Tensor,
    train: TrainConfig,
    progress: Progress | None = None,
) -> BaseRun:
    """Train θˢ from θ⁰ on all N examples for K epochs, recording the batch order."""
    n = x.shape[0]
    none = torch.empty(1, 0, dtype=torch.long)
    obj, _, _ = variant_objective("cold", problem, theta0, 0.0, 0.0)
    if train.optimizer == "lbfgs":
        res = _lbfgs(
            obj, theta0[None], x, t, none, 0.0, True, None, train, "base training", progress
        )
        return BaseRun(
            theta0, res.theta[0], torch.empty(0, n, dtype=torch.long), res.epoch_loss[:, 0]
        )
    orders = epoch_orders(n, train.seed, range(train.epochs))
    res = train_stacked(
        obj,
        theta0[None],
        x,
        t,
        list(orders),
        _sgd_settings(train, train.lr),
        removed=none,
        epsilon=0.0,
        label="base training",
        progress=progress,
    )
    return BaseRun(theta0, res.theta[0], orders, res.epoch_loss[:, 0])


def retrain(
    variant: str,
    problem: Problem,
    base: BaseRun,
    x: Tensor,
    t: Tensor,
    removed: Tensor,
    *,
    train: TrainConfig,
    retrain: RetrainConfig,
    damping: float,
    epsilon: float | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Optimum of ``variant`` for each of the M removal sets in ``removed (M, k)``, all at once.

    ``epsilon`` defaults to 1/N (removal). Cold start replays ``base.orders`` for its first K
    epochs, then continues with epochs K.. of the same seed; the others start from θˢ on those
    continuation epochs.
    """
    n = x.shape[0]
    eps = 1.0 / n if epsilon is None else epsilon
    m = removed.shape[0]
    objective, mask, prepare = variant_objective(variant, problem, base.theta_s, eps, damping)
    init = base.theta0 if variant == "cold" else base.theta_s
    theta0 = init[None].expand(m, -1).clone()
    label = f"retraining ({variant})"
    if train.optimizer == "lbfgs":
        return _lbfgs(objective, theta0, x, t, removed, eps, mask, prepare, train, label, progress)
    k = train.epochs
    extra = retrain_epochs(train, retrain, variant)
    cont = list(epoch_orders(n, train.seed, range(k, k + extra)))
    if variant == "cold":
        if base.orders.shape[0] != k:
            raise ValueError(
                f"base run recorded {base.orders.shape[0]} epochs of batch order, expected K={k}"
            )
        orders, first = [*base.orders, *cont], 0
    else:
        orders, first = cont, k
    settings = _sgd_settings(train, variant_lr(train, retrain, variant))
    return train_stacked(
        objective,
        theta0,
        x,
        t,
        orders,
        settings,
        removed=removed,
        epsilon=eps,
        mask_removed=mask,
        prepare=prepare,
        first_epoch=first,
        label=label,
        progress=progress,
    )
