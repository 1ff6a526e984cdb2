"""Vectorized training: M models (M removals of one variant) as one computation.

The M parameter vectors are stacked into ``θ ∈ R^{M×d}``; one shared batch stream feeds all of
them, each model gets its own removal weights (see :mod:`pbrf.objectives`) and removed
examples, and ``vmap(grad_and_value(objective))`` computes all M gradients in one pass.
A run with M = 1 executes the same code, so M stacked models equal M separate runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pbrf.kernels import AnyStepper, LinearizedStepper, MLPStepper, Stepper
from pbrf.objectives import Batch, removal_weights
from pbrf.optim import FirstOrderOptimizer, step_lr
from pbrf.schedule import batches_of

# objective(θ (d,), batch, weights (b,), removed_x (k, ...), removed_t (k, ...)) -> scalar
StackedObjective = Callable[[Tensor, Batch, Tensor, Tensor, Tensor], Tensor]
Progress = Callable[[int, Tensor], None]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss. Attributes: ``label`` (what was trained), ``epoch``
    (or L-BFGS iteration), ``models`` (indices of the affected stacked models) and ``lr``
    (``None`` for L-BFGS)."""

    def __init__(self, label: str, epoch: int, models: list[int], lr: float | None):
        self.label, self.epoch, self.models, self.lr = label, epoch, models, lr
        if lr is None:
            where, advice = (
                f"iteration {epoch}",
                "L-BFGS has no learning rate: check the inputs for NaN/inf, raise the weight "
                "decay, or train in float64",
            )
        else:
            where = f"epoch {epoch}"
            advice = f"learning rate {lr:g}: lower it or train for fewer epochs"
        super().__init__(
            f"{label}: the loss became non-finite in {where} for model(s) {models} ({advice})"
        )

    def __reduce__(self):  # keep the attributes when pickled (a step in a worker process)
        return (type(self), (self.label, self.epoch, self.models, self.lr))


@dataclass(frozen=True)
class SGDSettings:
    """How to step: optimizer kind, learning rate (with step decay) and batch size."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch_size: int | None = 128
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 1.0


@dataclass
class TrainResult:
    theta: Tensor  # (M, d) final parameters
    epoch_loss: Tensor  # (epochs, M) mean objective per epoch, as seen during the epoch
    # completed epochs → (M,) objective over one full epoch of batches at fixed parameters
    monitored: dict[int, Tensor] = field(default_factory=dict)
    # completed epochs → (M, d) parameters at that point (``snapshots`` of train_stacked)
    snapshots: dict[int, Tensor] = field(default_factory=dict)


def check_finite(values: Tensor, *, label: str, epoch: int, lr: float | None) -> None:
    """Raise :class:`NonFiniteLossError` if any model's loss is NaN or infinite.

    ``lr=None`` marks a line-search optimizer (L-BFGS), where the fix is in the problem itself.
    """
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        raise NonFiniteLossError(label, epoch, bad, lr)


def train_stacked(
    objective: StackedObjective | AnyStepper,
    theta0: Tensor,
    x: Tensor,
    t: Tensor,
    orders: Sequence[Tensor],
    settings: SGDSettings,
    *,
    removed: Tensor,
    epsilon: float,
    mask_removed: bool = True,
    prepare: Callable[[Batch], Batch] | None = None,
    first_epoch: int = 0,
    label: str = "training",
    progress: Progress | None = None,
    monitor: Sequence[int] = (),
    snapshots: Sequence[int] = (),
) -> TrainResult:
    """Train M models from ``theta0`` ``(M, d)`` over the epochs in ``orders``.

    The trained variable is whatever ``objective`` takes: the responses pass a displacement δ
    from an anchor (see :mod:`pbrf.objectives`), so ``theta0`` is then zeros.

    ``orders[e]`` is the example order of epoch ``e``; ``removed`` ``(M, k)`` the indices model m
    removes (``k = 0`` for none). With ``mask_removed`` the batch weights are
    ``1 − Nε`` on removed examples (Eq. 2); otherwise all weights are 1 and the objective handles
    the removal itself (the PBRF objectives). ``prepare`` adds shared per-batch context (e.g.
    ``f(θˢ, x)``). ``first_epoch`` offsets the epoch numbers used by the learning-rate schedule.

    ``monitor`` lists numbers of completed epochs (0 = before training) after which the objective
    is evaluated at the current parameters over one fixed pass of batches (the first epoch's
    order, no update): unlike the running epoch means, these values compare like with like, so
    they tell whether the objective is still falling.

    ``snapshots`` lists numbers of completed epochs (0 = before training) at which a copy of the
    parameters is kept (TracIn's checkpoints); the run itself is unchanged.

    ``objective`` is either one model's objective (stepped as ``vmap(grad_and_value)``, the
    reference) or a stepper of :mod:`pbrf.kernels` (a fast kernel: in-place updates, and the
    start-of-run objective from one shared forward pass when all models start equal).
    """
    n = x.shape[0]
    theta = theta0.clone()
    removed = removed.to(x.device)
    removed_x, removed_t = x[removed], t[removed]
    opt = FirstOrderOptimizer(
        settings.optimizer, momentum=settings.momentum, betas=settings.betas, eps=settings.eps
    )
    fast = isinstance(objective, (Stepper, LinearizedStepper, MLPStepper))
    stepper = objective if fast else Stepper(objective, "reference")

    def batches(order: Tensor):
        for idx in batches_of(order, settings.batch_size):
            idx = idx.to(x.device)
            batch = Batch(x[idx], t[idx], int(idx.numel()))
            if prepare is not None:
                batch = prepare(batch)
            if mask_removed:
                w = removal_weights(idx, removed, n, epsilon).to(theta.dtype)
            else:
                w = torch.ones(theta.shape[0], idx.numel(), dtype=theta.dtype, device=theta.device)
            yield batch, w

    def full_objective(params: Tensor, shared: bool = False) -> Tensor:
        value = stepper.shared_value if shared else stepper.value
        args = (params[0] if shared else params, removed_x, removed_t)
        with torch.no_grad():
            vals = [value(args[0], b, w, *args[1:]) for b, w in batches(orders[0])]
        return torch.stack(vals).mean(0)

    monitored: dict[int, Tensor] = {}
    if 0 in monitor and orders:
        shared = fast and bool((theta == theta[:1]).all())
        monitored[0] = full_objective(theta, shared)
    kept: dict[int, Tensor] = {0: theta.detach().clone()} if 0 in snapshots else {}
    history = []
    for e, order in enumerate(orders):
        epoch = first_epoch + e
        lr = step_lr(settings.lr, epoch, settings.lr_milestones, settings.lr_gamma)
        total = torch.zeros(theta.shape[0], dtype=theta.dtype, device=theta.device)
        steps = 0
        for batch, w in batches(order):
            grads, values = stepper.grad_and_value(theta, batch, w, removed_x, removed_t)
            if fast:
                opt.step_(theta, grads, lr)
            else:
                theta = opt.step(theta, grads, lr)
            total += values.detach()
            steps += 1
        mean = total / steps
        check_finite(mean, label=label, epoch=epoch, lr=lr)
        history.append(mean)
        if e + 1 in monitor:
            monitored[e + 1] = full_objective(theta)
        if e + 1 in snapshots:
            kept[e + 1] = theta.detach().clone()
        if progress is not None:
            progress(epoch, mean)
    epoch_loss = torch.stack(history) if history else torch.empty(0, theta.shape[0])
    return TrainResult(theta=theta, epoch_loss=epoch_loss, monitored=monitored, snapshots=kept)
