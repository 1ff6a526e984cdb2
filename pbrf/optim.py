"""Functional first-order optimizers on stacked flat parameters ``(M, d)``.

Every update is elementwise, so one call updates all M models of a vectorized run and a run
with M = 1 is the same code path. Conventions follow ``torch.optim`` (SGD momentum buffer
``v ← μ v + g``, ``θ ← θ − η v``; Adam with bias correction). Weight decay is not an
optimizer option here: it is part of the objective (see :mod:`pbrf.problem`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass
class FirstOrderOptimizer:
    """SGD, SGD with momentum, or Adam, holding its state for stacked parameters."""

    kind: str
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    state: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 0

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.kind!r}; choose one of {OPTIMIZERS}")

    def step_(self, theta: Tensor, grad: Tensor, lr: float) -> None:
        """:meth:`step` in place: ``theta`` is updated and ``grad`` overwritten; the arithmetic
        (operations and their order) is that of :meth:`step`, so the results are bitwise equal."""
        self.steps += 1
        if self.kind == "sgd":
            theta.sub_(grad.mul_(lr))
            return
        if self.kind == "momentum":
            buf = self.state.get("v")
            if buf is None:
                buf = self.state["v"] = grad.clone()
            else:
                buf.mul_(self.momentum).add_(grad)
            theta.sub_(torch.mul(buf, lr, out=grad))
            return
        b1, b2 = self.betas
        m = self.state.setdefault("m", torch.zeros_like(theta))
        v = self.state.setdefault("v", torch.zeros_like(theta))
        m.mul_(b1).add_((1 - b1) * grad)
        v.mul_(b2).add_((1 - b2) * grad * grad)
        m_hat = m / (1 - b1**self.steps)
        v_hat = v / (1 - b2**self.steps)
        theta.sub_(lr * m_hat / (v_hat.sqrt() + self.eps))

    def step(self, theta: Tensor, grad: Tensor, lr: float) -> Tensor:
        """Return the updated parameters (a new tensor); ``theta`` and ``grad`` are ``(M, d)``."""
        self.steps += 1
        if self.kind == "sgd":
            return theta - lr * grad
        if self.kind == "momentum":
            buf = self.state.get("v")
            buf = grad.clone() if buf is None else self.momentum * buf + grad
            self.state["v"] = buf
            return theta - lr * buf
        b1, b2 = self.betas
        m = self.state.get("m", torch.zeros_like(theta))
        v = self.state.get("v", torch.zeros_like(theta))
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        self.state["m"], self.state["v"] = m, v
        m_hat = m / (1 - b1**self.steps)
        v_hat = v / (1 - b2**self.steps)
        return theta - lr * m_hat / (v_hat.sqrt() + self.eps)


def step_lr(
    base_lr: float, epoch: int, milestones: tuple[int, ...] = (), gamma: float = 1.0
) -> float:
    """Learning rate at ``epoch``: ``base_lr · gamma^(number of milestones ≤ epoch)``."""
    return base_lr * gamma ** sum(epoch >= m for m in milestones)
