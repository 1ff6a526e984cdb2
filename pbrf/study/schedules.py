"""Each variant's schedule (epochs, learning-rate factor) and horizon η·S under a study config.

The description of a study meets the math here: these read :class:`StudyConfig` and return the
plain :class:`~pbrf.responses.Schedule` that :func:`pbrf.responses.retrain` takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbrf.responses import (
    PAPER_SETTING,
    PBRF_VARIANTS,
    Schedule,
    continuation_lr,
    matched_epochs,
    momentum_of,
    sgd_horizon,
    steps_per_epoch,
)
from pbrf.variants import VARIANTS

if TYPE_CHECKING:  # type hints only: the study config is not code these steps run
    from pbrf.study.config import StudyConfig


def variant_schedule(
    cfg: StudyConfig, variant: str, n_train: int, lissa_horizon: float | None = None
) -> Schedule:
    """Epochs and learning-rate factor of ``variant`` under ``cfg`` (module table, Appendix E.2).

    A matched PBRF needs ``lissa_horizon`` (T/σ of the influence solve); ``n_train`` sets the
    steps per epoch.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")

    def k_half() -> int:  # K/2: the proximal objectives' epochs (read only where used)
        return max(1, round(cfg.train.epochs * cfg.retrain.epochs_fraction))

    if variant not in PBRF_VARIANTS:
        return Schedule(k_half(), 1.0)
    pb = cfg.retrain.pbrf
    if variant in PAPER_SETTING:
        return Schedule(k_half(), pb.paper_lr_factor)
    if pb.horizon == "explicit" or cfg.train.optimizer.name == "lbfgs":
        return Schedule(pb.epochs or k_half(), pb.lr_factor)
    if lissa_horizon is None:
        raise ValueError(f"a horizon-matched {variant} needs LiSSA's horizon T/σ")
    lr = continuation_lr(cfg.train)
    assert lr is not None
    epochs = matched_epochs(
        lissa_horizon,
        lr * pb.lr_factor,
        steps_per_epoch(n_train, cfg.train.batch_size),
        momentum_of(cfg.train),
    )
    return Schedule(epochs, pb.lr_factor)


def schedule_horizon(cfg: StudyConfig, schedule: Schedule, n_train: int) -> float | None:
    """η·S/(1−μ) of a warm-started schedule; ``None`` for Adam and L-BFGS (no fixed step)."""
    if cfg.train.optimizer.name not in ("sgd", "momentum"):
        return None
    lr = continuation_lr(cfg.train)
    assert lr is not None
    steps = schedule.epochs * steps_per_epoch(n_train, cfg.train.batch_size)
    return sgd_horizon(lr * schedule.lr_factor, steps, momentum_of(cfg.train))
