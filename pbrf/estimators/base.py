"""The common estimator interface: what every influence estimator takes and returns.

Conventions shared by all estimators (each estimator's docstring says how it converts its own
definition to these):

* removal set ``S`` (one row of ``removed (M, k)``), ``g_S = Σ_{z∈S} ∇ℓ_z(θˢ)`` with the weight
  decay folded into ``ℓ_z`` (:mod:`pbrf.problem`), ``ε = 1/N`` per removed example;
* parameter response ``Δθ = ε (G + λI)⁻¹ g_S`` (Eq. 10 / 49), ``G`` the GNH (or Hessian) of the
  training cost at θˢ and ``λ`` the damping;
* predicted change of the **mean loss over the P chosen test points**
  ``ΔL = ε ∇L_testᵀ (G + λI)⁻¹ g_S`` (Eq. 23); positive means removing ``S`` increases the test
  loss, the sign of ``L_test(θ_without_S) − L_test(θˢ)``;
* self-influence ``ε g_Sᵀ (G + λI)⁻¹ g_S``.

An estimator replaces ``(G + λI)⁻¹`` by its own approximation (or, for TracIn, replaces the
whole response by the training trajectory's first-order effect).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from pbrf.problem import Problem

Curvature = Literal["gnh", "hessian"]


class EstimatorSettings(BaseModel):
    """Base of every estimator's settings: frozen, no unknown keys, discriminated by ``name``."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A saved training iterate for TracIn.

    ``lr`` is the learning rate η_k used in the interval the checkpoint stands for and ``visits``
    the number of times each training example's gradient was applied in that interval (the
    number of epochs between checkpoints, for per-epoch shuffling).
    """

    theta: Tensor  # (d,)
    lr: float
    visits: float = 1.0

    def __post_init__(self) -> None:
        if self.theta.dim() != 1:
            raise ValueError(
                f"checkpoint theta must be a flat (d,) vector, got {tuple(self.theta.shape)}"
            )
        if not self.lr > 0 or not self.visits > 0:
            raise ValueError(f"checkpoint lr and visits must be > 0, got {self.lr}, {self.visits}")


@dataclass(frozen=True, eq=False)
class EstimatorInputs:
    """Everything an estimator may use, at one trained θˢ.

    ``removed (M, k)`` holds training indices, one removal set per row. ``x_test``/``t_test`` are
    the P test points whose mean loss change is predicted. ``epsilon=None`` means ``1/N``.
    ``checkpoints`` and ``train_batch_size`` (``None``: full batch) are TracIn's; ``module`` (an
    ``nn.Module`` whose ``named_parameters`` match ``problem.spec``) is what K-FAC/EK-FAC hand to
    kronfluence. ``chunk_size`` bounds the examples per curvature product.
    """

    problem: Problem
    theta: Tensor
    x_train: Tensor
    t_train: Tensor
    removed: Tensor
    x_test: Tensor
    t_test: Tensor
    damping: float
    epsilon: float | None = None
    curvature: Curvature = "gnh"
    checkpoints: tuple[Checkpoint, ...] = ()
    train_batch_size: int | None = None
    module: nn.Module | None = None
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.theta.dim() != 1:
            raise ValueError(f"theta must be a flat (d,) vector, got {tuple(self.theta.shape)}")
        if self.removed.dim() != 2 or self.removed.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"removed must be an integer (M, k) tensor, got {self.removed.dtype} "
                f"{tuple(self.removed.shape)}"
            )
        if self.removed.numel() and (
            int(self.removed.min()) < 0 or int(self.removed.max()) >= self.n_train
        ):
            raise ValueError(f"removed indices must lie in [0, {self.n_train})")
        if self.damping < 0:
            raise ValueError(f"damping must be ≥ 0, got {self.damping}")
        if self.curvature not in ("gnh", "hessian"):
            raise ValueError(f"curvature must be 'gnh' or 'hessian', got {self.curvature!r}")
        if self.x_test.shape[0] < 1:
            raise ValueError("need at least one test point")

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def eps(self) -> float:
        """ε per removed example: ``1/N`` unless given."""
        return 1.0 / self.n_train if self.epsilon is None else float(self.epsilon)

    @property
    def num_removals(self) -> int:
        return int(self.removed.shape[0])


@dataclass(frozen=True, eq=False)
class Estimate:
    """One estimator's answer for the M removal sets.

    ``predicted_change (M,)`` is ΔL of Eq. 23 when ``calibrated`` (units of test loss), otherwise
    a score with the same sign convention that only ranks removals (e.g. a cosine).
    ``param_response (M, d)`` is Δθ (None where the method defines none), ``self_influence (M,)``
    likewise. ``info`` holds wall time, peak memory where measurable, convergence notes.
    """

    name: str
    predicted_change: Tensor
    param_response: Tensor | None = None
    self_influence: Tensor | None = None
    calibrated: bool = True
    info: dict[str, Any] = field(default_factory=dict)


S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True, eq=False)
class Estimator(Generic[S]):
    """A registry entry: the settings model and the function ``(inputs, settings) → Estimate``."""

    name: str
    settings: type[S]
    fn: Callable[[EstimatorInputs, S], Estimate]

    def __call__(self, inputs: EstimatorInputs, settings: S | None = None) -> Estimate:
        return self.fn(inputs, self.settings() if settings is None else settings)
