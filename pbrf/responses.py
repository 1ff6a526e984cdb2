"""Base training and the retraining variants of Table 1 / Appendix E.2.

=================  ==========================================  ====  ============================
variant            objective                                   init  batches, learning rate
=================  ==========================================  ====  ============================
cold               Eq. 2  (removal by weight mask)             θ⁰    base order 0..K−1, then K..
warm               Eq. 2                                       θˢ    K.., η
proximal           Eq. 7  (+ λ/2‖θ−θˢ‖²)                       θˢ    K.., η
pbrf               Eq. 8  (Bregman, −εℓ_z, proximal)           θˢ    K.., η × lr_factor
linearized_pbrf    Eq. 11 (quadratic via jvp)                  θˢ    K.., η × lr_factor
pbrf_paper         Eq. 8, the paper's setting                  θˢ    K.. for K/2 epochs, η/10
linearized_pbrf_   Eq. 11 at the paper's setting               θˢ    K.. for K/2 epochs, η/10
paper
two_stage          Eq. 2 minus Eq. 2 at ε = 0 (Appendix F.2)   θˢ    K.., η
=================  ==========================================  ====  ============================

**Two-stage LOO** (Appendix F.2, Table 8) trains M + 1 warm-started models on the same batches:
the M removals and one on the full data (ε = 0, shared by every removal); the response is their
difference ``Δ_m = (θ_{−z_m} − θˢ) − (θ_full − θˢ)``, added to θˢ. Subtracting the full-data
run removes the effect of training longer, which a non-converged network shows as an O(1) drift.

Every variant returns its optima as displacements ``Δ = θ − θˢ`` (see :mod:`pbrf.objectives`):
the warm-started ones are trained as displacements from the start, so updates far below the
rounding unit of θˢ still accumulate. With an L-BFGS base optimizer every variant is minimized
full-batch to convergence instead.

**Horizons.** LiSSA with scale σ and depth T acts like T gradient steps of size 1/σ on the damped
quadratic, resolving curvature above ≈ σ/T; S steps of SGD with learning rate η on the PBRF
resolve curvature above ≈ 1/(ηS) (÷(1−μ) with momentum). ``horizon="matched"`` picks S so that
η·S/(1−μ) = T/σ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap

from pbrf.checkpoints import checkpoint_epochs, tracin_checkpoints
from pbrf.estimators.base import Checkpoint
from pbrf.kernels import choose_kernel, make_stepper
from pbrf.lbfgs import lbfgs_stacked
from pbrf.objectives import (
    Batch,
    downweighted_objective,
    linearized_pbrf_objective,
    pbrf_objective,
    proximal_objective,
    removal_weights,
)
from pbrf.optim import step_lr
from pbrf.problem import Problem
from pbrf.schedule import epoch_orders
from pbrf.solvers.errors import NonPositiveScaleError
from pbrf.trainer import (
    Progress,
    SGDSettings,
    StackedObjective,
    TrainResult,
    check_finite,
    train_stacked,
)
from pbrf.variants import VARIANTS


class TrainSettings(Protocol):
    """What training reads of its settings (``pbrf.study.config.TrainConfig`` has these)."""

    epochs: int
    batch_size: int | None
    weight_decay: float
    optimizer: Any  # {name, lr, momentum?, lr_milestones, lr_gamma, ...} or L-BFGS's settings


PBRF_VARIANTS = frozenset({"pbrf", "linearized_pbrf", "pbrf_paper", "linearized_pbrf_paper"})
PAPER_SETTING = frozenset({"pbrf_paper", "linearized_pbrf_paper"})  # K/2 epochs at lr/10
BREGMAN = frozenset({"pbrf", "pbrf_paper"})


@dataclass
class BaseRun:
    theta0: Tensor  # (d,) initialization θ⁰
    theta_s: Tensor  # (d,) trained parameters θˢ
    orders: Tensor  # (K, N) batch order of the base run (empty for L-BFGS)
    epoch_loss: Tensor  # (K,) or (iterations,)
    converged: bool | None = None  # L-BFGS only
    checkpoints: tuple[Checkpoint, ...] = ()  # TracIn's (``train.checkpoints``; SGD/momentum)


@dataclass
class Response:
    """The optima of one variant for M removal sets."""

    delta: Tensor  # (M, d) θ − θˢ
    epoch_loss: Tensor  # (E, M) mean objective per epoch (per iteration for L-BFGS: (1, M))
    epochs: int  # epochs run from the variant's start (L-BFGS: iteration cap)
    lr: float | None  # learning rate (None for L-BFGS)
    converged: Tensor | None = None  # (M,) bool, L-BFGS only
    grad_norm: Tensor | None = None  # (M,) final ‖∇‖_∞, L-BFGS only
    # (3, M) the objective over a fixed pass of batches at the start, after 90 % of the epochs
    # run from θˢ (cold: of the epochs after the K replayed ones) and at the end; SGD/Adam only
    checkpoints: Tensor | None = None
    checkpoint_epochs: tuple[int, ...] = ()


@dataclass(frozen=True)
class Schedule:
    """How long and how fast a variant trains from θˢ."""

    epochs: int  # epochs from θˢ (cold start adds the K replayed base epochs)
    lr_factor: float  # learning rate = base learning rate × this


# --------------------------------------------------------------------------- schedules


def sgd_horizon(lr: float, steps: int, momentum: float = 0.0) -> float:
    """η·S/(1−μ): gradient descent resolves curvature above about its inverse."""
    return lr * steps / (1.0 - momentum)


def lissa_scale(
    scale: float | str, scale_factor: float, damping: float, top_eigenvalue: float | None
) -> float:
    """LiSSA's σ: the given scale, or ``scale_factor·(λ_max + λ)`` for ``"auto"`` (Eq. 51)."""
    if scale != "auto":
        return float(scale)
    if top_eigenvalue is None:
        raise ValueError("scale='auto' needs the curvature's top eigenvalue")
    if not top_eigenvalue + damping > 0:
        raise NonPositiveScaleError(
            top_eigenvalue=top_eigenvalue, damping=damping, scale_factor=scale_factor
        )
    return scale_factor * (top_eigenvalue + damping)


def lissa_horizon(depth: int, scale: float) -> float:
    """T/σ: LiSSA acts like T gradient steps of size 1/σ on the damped quadratic."""
    return depth / scale


def matched_epochs(horizon: float, lr: float, steps_per_epoch: int, momentum: float = 0.0) -> int:
    """Epochs S/steps_per_epoch (≥ 1, nearest) with η·S/(1−μ) closest to ``horizon``."""
    if horizon <= 0 or lr <= 0 or steps_per_epoch < 1:
        raise ValueError(
            f"need horizon > 0, lr > 0, steps_per_epoch ≥ 1; got {horizon}, {lr}, {steps_per_epoch}"
        )
    steps = horizon * (1.0 - momentum) / lr
    return max(1, round(steps / steps_per_epoch))


def momentum_of(train: TrainSettings) -> float:
    return getattr(train.optimizer, "momentum", 0.0)


def base_lr(train: TrainSettings) -> float | None:
    return getattr(train.optimizer, "lr", None)


def continuation_lr(train: TrainSettings) -> float | None:
    """The learning rate the warm-started variants start from θˢ with: the base rate after the
    step decays of the K base epochs (``lr · gamma^(milestones ≤ K)``), as the trainer applies
    it from epoch K on. Horizons η·S use it (milestones after K are not counted)."""
    lr = base_lr(train)
    if lr is None:
        return None
    opt = train.optimizer
    return step_lr(lr, train.epochs, tuple(opt.lr_milestones), opt.lr_gamma)


# --------------------------------------------------------------------------- objectives


def variant_objective(
    variant: str, problem: Problem, anchor: Tensor, epsilon: float, damping: float
) -> tuple[StackedObjective, bool, Callable[[Batch], Batch] | None]:
    """``(objective of δ, mask_removed, prepare)`` for ``variant``; θ = ``anchor`` + δ."""

    def downweighted(d: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return downweighted_objective(problem, anchor + d, b, w)

    def proximal(d: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return proximal_objective(problem, d, b, w, anchor, damping)

    def bregman(d: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return pbrf_objective(problem, d, b, rx, rt, anchor, epsilon, damping)

    def linearized(d: Tensor, b: Batch, w: Tensor, rx: Tensor, rt: Tensor) -> Tensor:
        return linearized_pbrf_objective(problem, d, b, rx, rt, anchor, epsilon, damping)

    def with_anchor_outputs(batch: Batch) -> Batch:
        with torch.no_grad():
            return batch._replace(anchor_outputs=problem.f(anchor, batch.x))

    table = {
        "cold": (downweighted, True, None),
        "warm": (downweighted, True, None),
        "proximal": (proximal, True, None),
        "pbrf": (bregman, False, with_anchor_outputs),
        "pbrf_paper": (bregman, False, with_anchor_outputs),
        "linearized_pbrf": (linearized, False, None),
        "linearized_pbrf_paper": (linearized, False, None),
        "two_stage": (downweighted, True, None),
    }
    if variant not in table:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    return table[variant]


def sgd_settings(train: TrainSettings, lr_factor: float = 1.0) -> SGDSettings:
    opt = train.optimizer
    if opt.name == "lbfgs":
        raise ValueError("L-BFGS has no first-order step settings")
    return SGDSettings(
        optimizer=opt.name,
        lr=opt.lr * lr_factor,
        momentum=getattr(opt, "momentum", 0.0),
        betas=(getattr(opt, "beta1", 0.9), getattr(opt, "beta2", 0.999)),
        eps=getattr(opt, "eps", 1e-8),
        batch_size=train.batch_size,
        lr_milestones=tuple(opt.lr_milestones),
        lr_gamma=opt.lr_gamma,
    )


def _lbfgs(
    objective: StackedObjective,
    delta0: Tensor,
    x: Tensor,
    t: Tensor,
    removed: Tensor,
    epsilon: float,
    mask_removed: bool,
    prepare: Callable[[Batch], Batch] | None,
    train: TrainSettings,
    label: str,
    progress: Progress | None,
):
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
        else torch.ones(delta0.shape[0], n, device=x.device)
    )
    w = w.to(delta0.dtype)

    def one(d: Tensor, w_m: Tensor, rx_m: Tensor, rt_m: Tensor) -> Tensor:
        return objective(d, batch, w_m, rx_m, rt_m)

    gv = vmap(grad_and_value(one))
    val = vmap(one)
    opt = train.optimizer
    res = lbfgs_stacked(
        lambda d: gv(d, w, rx, rt),
        lambda d: val(d, w, rx, rt),
        delta0,
        max_iter=train.epochs,
        history=opt.history,
        tol_grad=opt.tol,
        progress=progress,
    )
    check_finite(res.value, label=label, epoch=int(res.iterations.max()), lr=None)
    return res


def train_base(
    problem: Problem,
    theta0: Tensor,
    x: Tensor,
    t: Tensor,
    train: TrainSettings,
    progress: Progress | None = None,
    kernel: str = "auto",
) -> BaseRun:
    """Train θˢ from θ⁰ on all N examples for K epochs, recording the batch order and
    ``train.checkpoints`` TracIn checkpoints (:mod:`pbrf.checkpoints`). ``kernel``: the training
    step of :mod:`pbrf.kernels` (``reference``, ``vmap``, ``loop`` or ``auto``)."""
    n = x.shape[0]
    none = torch.empty(1, 0, dtype=torch.long)
    obj, _, _ = variant_objective("cold", problem, theta0, 0.0, 0.0)
    zero = torch.zeros_like(theta0)[None]
    if train.optimizer.name == "lbfgs":
        res = _lbfgs(obj, zero, x, t, none, 0.0, True, None, train, "base training", progress)
        return BaseRun(
            theta0,
            theta0 + res.theta[0],
            torch.empty(0, n, dtype=torch.long),
            res.value.detach()[None].flatten(),
            converged=bool(res.converged[0]),
        )
    orders = epoch_orders(n, train.seed, range(train.epochs))
    settings = sgd_settings(train)
    snapshots = checkpoint_epochs(train.epochs, train.checkpoints) if train.checkpoints else ()
    kernel = choose_kernel(kernel, theta0.numel(), train.batch_size, n, 1, problem)
    res = train_stacked(
        make_stepper("cold", problem, theta0, 0.0, 0.0, kernel, obj),
        zero,
        x,
        t,
        list(orders),
        settings,
        removed=none,
        epsilon=0.0,
        label="base training",
        progress=progress,
        snapshots=snapshots,
    )
    momentum = momentum_of(train)

    def step_at(epoch: int) -> float:
        lr = step_lr(settings.lr, epoch, settings.lr_milestones, settings.lr_gamma)
        return lr / (1.0 - momentum)

    kept = {e: theta0 + d[0] for e, d in res.snapshots.items()}
    return BaseRun(
        theta0,
        theta0 + res.theta[0],
        orders,
        res.epoch_loss[:, 0],
        checkpoints=tracin_checkpoints(kept, train.epochs, step_at),
    )


def retrain(
    variant: str,
    problem: Problem,
    base: BaseRun,
    x: Tensor,
    t: Tensor,
    removed: Tensor,
    *,
    train: TrainSettings,
    damping: float,
    schedule: Schedule,
    epsilon: float | None = None,
    progress: Progress | None = None,
    kernel: str = "auto",
    checks: bool = True,
) -> Response:
    """Optima of ``variant`` for each of the M removal sets in ``removed (M, k)``, all at once.

    ``kernel`` picks the training step of :mod:`pbrf.kernels` (``reference``, ``vmap``, ``loop``
    or ``auto``); every kernel gives the same optima up to rounding. ``checks=False`` skips the
    convergence check (``Response.checkpoints`` is then ``None``; the optima are unchanged): a
    benchmark times the training epochs alone with it.

    ``epsilon`` defaults to 1/N (removal). Cold start replays ``base.orders`` for its first K
    epochs, then continues with epochs K.. of the same seed; the others start from θˢ on those
    continuation epochs. ``schedule`` gives the epochs from θˢ and the learning-rate factor.
    """
    if variant == "two_stage":
        return _two_stage(
            problem, base, x, t, removed, train=train, damping=damping, schedule=schedule,
            epsilon=epsilon, progress=progress, kernel=kernel, checks=checks,
        )  # fmt: skip
    n = x.shape[0]
    eps = 1.0 / n if epsilon is None else epsilon
    m = removed.shape[0]
    anchor = base.theta0 if variant == "cold" else base.theta_s
    objective, mask, prepare = variant_objective(variant, problem, anchor, eps, damping)
    delta0 = torch.zeros(m, anchor.numel(), dtype=anchor.dtype, device=anchor.device)
    label = f"retraining ({variant})"

    def relative_to_theta_s(delta: Tensor) -> Tensor:
        if variant != "cold":
            return delta
        return (anchor[None] + delta) - base.theta_s[None]

    if train.optimizer.name == "lbfgs":
        res = _lbfgs(objective, delta0, x, t, removed, eps, mask, prepare, train, label, progress)
        return Response(
            relative_to_theta_s(res.theta),
            res.value.detach()[None],
            train.epochs,
            None,
            converged=res.converged,
            grad_norm=res.grad_norm,
        )
    k = train.epochs
    extra = schedule.epochs
    cont = list(epoch_orders(n, train.seed, range(k, k + extra)))
    if variant == "cold":
        if base.orders.shape[0] != k:
            raise ValueError(
                f"base run recorded {base.orders.shape[0]} epochs of batch order, expected K={k}"
            )
        orders, first = [*base.orders, *cont], 0
    else:
        orders, first = cont, k
    settings = sgd_settings(train, schedule.lr_factor)
    done = len(orders) - extra  # epochs before the ones run from θˢ (cold: the K replayed)
    monitor = (done, done + (9 * extra) // 10, done + extra) if checks else ()
    kernel = choose_kernel(kernel, anchor.numel(), settings.batch_size, n, m, problem, variant)
    res: TrainResult = train_stacked(
        make_stepper(variant, problem, anchor, eps, damping, kernel, objective),
        delta0,
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
        monitor=monitor,
    )
    checkpoints = torch.stack([res.monitored[c] for c in monitor]) if checks else None
    return Response(
        relative_to_theta_s(res.theta),
        res.epoch_loss,
        len(orders),
        settings.lr,
        checkpoints=checkpoints,
        checkpoint_epochs=monitor,
    )


# a removal index that matches no example: the full-data model of a two-stage run
NO_REMOVAL = -1


def _two_stage(
    problem: Problem,
    base: BaseRun,
    x: Tensor,
    t: Tensor,
    removed: Tensor,
    *,
    train: TrainSettings,
    damping: float,
    schedule: Schedule,
    epsilon: float | None,
    progress: Progress | None,
    kernel: str,
    checks: bool = True,
) -> Response:
    """Two-stage LOO (Appendix F.2): M warm-started removals and one full-data run (ε = 0 via a
    removal row that matches no example), trained as one vectorized run on the same batches;
    returns ``Δ_m = δ_m − δ_full`` with the other fields of the M removal models."""
    m = removed.shape[0]
    full = torch.full((1, removed.shape[1]), NO_REMOVAL, dtype=removed.dtype, device=removed.device)
    res = retrain(
        "warm", problem, base, x, t, torch.cat([removed, full]), train=train, damping=damping,
        schedule=schedule, epsilon=epsilon, progress=progress, kernel=kernel, checks=checks,
    )  # fmt: skip
    return Response(
        res.delta[:m] - res.delta[m:],
        res.epoch_loss[:, :m],
        res.epochs,
        res.lr,
        converged=None if res.converged is None else res.converged[:m] & res.converged[m],
        grad_norm=None if res.grad_norm is None else res.grad_norm[:m],
        checkpoints=None if res.checkpoints is None else res.checkpoints[:, :m],
        checkpoint_epochs=res.checkpoint_epochs,
    )


def total_epochs(train: TrainSettings, schedule: Schedule, variant: str) -> int:
    """Epochs (or L-BFGS iterations at most) one :func:`retrain` call of ``variant`` runs."""
    if train.optimizer.name == "lbfgs":
        return train.epochs
    return train.epochs + schedule.epochs if variant == "cold" else schedule.epochs


def steps_per_epoch(n: int, batch_size: int | None) -> int:
    return 1 if batch_size is None else math.ceil(n / batch_size)
