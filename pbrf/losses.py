"""Losses with output-space structure: L(y, t), H_y v and the Bregman divergence (Eq. 9).

The Gauss-Newton Hessian (Eq. 6, 49) and the PBRF (Eq. 8) need the loss split from the network:
each loss here maps a batch of network outputs ``y`` (shape ``(B, *out)``) and targets ``t`` to
per-example losses ``(B,)``, and also gives the output-space Hessian-vector product
``H_y v`` and the Bregman divergence ``D_L(y, yˢ) = L(y,t) − L(yˢ,t) − ∇_y L(yˢ,t)ᵀ(y − yˢ)``.
All three losses are convex in ``y``, so ``H_y ⪰ 0`` and ``D_L ≥ 0``.

Conventions (per example):

* ``squared_error``: ``L = ½‖y − t‖²`` summed over output dims; ``H_y = I``; ``D = ½‖y − yˢ‖²``.
* ``cross_entropy``: softmax over the last dim; ``y`` is ``(B, C)`` or ``(B, T, C)`` (a sequence,
  e.g. a language model; the loss is the mean over the T positions). ``D`` is
  ``KL(softmax(yˢ) ‖ softmax(y))`` and does not depend on the target.
* ``binary_cross_entropy``: sigmoid per output unit, summed over units (the autoencoder's
  reconstruction loss; logistic regression with one logit). ``D`` is the sum of Bernoulli KLs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor


def _sum_per_example(z: Tensor) -> Tensor:
    return z.flatten(1).sum(dim=1) if z.dim() > 1 else z


class OutputLoss(ABC):
    """A loss ``L(y, t)`` convex in the network output ``y``."""

    name: str

    @abstractmethod
    def __call__(self, y: Tensor, t: Tensor) -> Tensor:
        """Per-example loss, shape ``(B,)``."""

    @abstractmethod
    def output_grad(self, y: Tensor, t: Tensor) -> Tensor:
        """``∇_y L(y, t)`` per example, same shape as ``y``."""

    @abstractmethod
    def output_hvp(self, y: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """``H_y v`` with ``H_y = ∇²_y L(y, t)`` per example; ``v`` has the shape of ``y``."""

    @abstractmethod
    def bregman(self, y: Tensor, ys: Tensor, t: Tensor) -> Tensor:
        """Bregman divergence ``D_L(y, yˢ)`` of Eq. 9, per example, shape ``(B,)``."""

    def quadratic_bregman(self, dy: Tensor, ys: Tensor, t: Tensor) -> Tensor:
        """``D_{L_quad}(yˢ + Δy, yˢ) = ½ Δyᵀ H_{yˢ} Δy`` (Eq. 12, 47), per example.

        The paper's Eq. 12 omits the ½ of a second-order Taylor expansion; with the ½ the
        optimum of Eq. 11 is exactly Eq. 49, which is what the paper derives.
        """
        return 0.5 * _sum_per_example(dy * self.output_hvp(ys, t, dy))

    def predict(self, y: Tensor) -> Tensor:
        """The model's prediction in target space (probabilities or regression values)."""
        return y


class SquaredError(OutputLoss):
    name = "squared_error"

    def __call__(self, y: Tensor, t: Tensor) -> Tensor:
        return 0.5 * _sum_per_example((y - t.reshape(y.shape)) ** 2)

    def output_grad(self, y: Tensor, t: Tensor) -> Tensor:
        return y - t.reshape(y.shape)

    def output_hvp(self, y: Tensor, t: Tensor, v: Tensor) -> Tensor:
        return v

    def bregman(self, y: Tensor, ys: Tensor, t: Tensor) -> Tensor:
        return 0.5 * _sum_per_example((y - ys) ** 2)


class CrossEntropy(OutputLoss):
    """Softmax cross-entropy; targets are integer class ids of shape ``y.shape[:-1]``."""

    name = "cross_entropy"

    @staticmethod
    def _positions(y: Tensor) -> int:
        return math.prod(y.shape[1:-1])

    def __call__(self, y: Tensor, t: Tensor) -> Tensor:
        logp = torch.log_softmax(y, dim=-1)
        nll = -torch.gather(logp, -1, t.long().unsqueeze(-1)).squeeze(-1)
        return _sum_per_example(nll) / self._positions(y)

    def output_grad(self, y: Tensor, t: Tensor) -> Tensor:
        p = torch.softmax(y, dim=-1)
        classes = torch.arange(y.shape[-1], device=y.device)
        onehot = (t.long().unsqueeze(-1) == classes).to(y.dtype)  # vmap-safe one-hot
        return (p - onehot) / self._positions(y)

    def output_hvp(self, y: Tensor, t: Tensor, v: Tensor) -> Tensor:
        # H = diag(p) − p pᵀ per position.
        p = torch.softmax(y, dim=-1)
        return (p * v - p * (p * v).sum(dim=-1, keepdim=True)) / self._positions(y)

    def bregman(self, y: Tensor, ys: Tensor, t: Tensor) -> Tensor:
        # lse(y) − lse(yˢ) − softmax(yˢ)ᵀ(y − yˢ) = KL(softmax(yˢ) ‖ softmax(y)).
        ps = torch.softmax(ys, dim=-1)
        d = torch.logsumexp(y, -1) - torch.logsumexp(ys, -1) - (ps * (y - ys)).sum(-1)
        return _sum_per_example(d) / self._positions(y)

    def predict(self, y: Tensor) -> Tensor:
        return torch.softmax(y, dim=-1)


class BinaryCrossEntropy(OutputLoss):
    """Sigmoid binary cross-entropy on logits, summed over output units; targets in [0, 1]."""

    name = "binary_cross_entropy"

    def __call__(self, y: Tensor, t: Tensor) -> Tensor:
        return _sum_per_example(F.softplus(y) - t.reshape(y.shape).to(y.dtype) * y)

    def output_grad(self, y: Tensor, t: Tensor) -> Tensor:
        return torch.sigmoid(y) - t.reshape(y.shape).to(y.dtype)

    def output_hvp(self, y: Tensor, t: Tensor, v: Tensor) -> Tensor:
        s = torch.sigmoid(y)
        return s * (1 - s) * v

    def bregman(self, y: Tensor, ys: Tensor, t: Tensor) -> Tensor:
        return _sum_per_example(F.softplus(y) - F.softplus(ys) - torch.sigmoid(ys) * (y - ys))

    def predict(self, y: Tensor) -> Tensor:
        return torch.sigmoid(y)


LOSSES: dict[str, type[OutputLoss]] = {
    cls.name: cls for cls in (SquaredError, CrossEntropy, BinaryCrossEntropy)
}


def get_loss(name: str) -> OutputLoss:
    """Loss by name (``squared_error``, ``cross_entropy``, ``binary_cross_entropy``)."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
