"""Multiclass logistic regression (Bae et al. 2022, Section 6.1 / Appendix E.3).

The convex baseline of the paper's experiments: influence functions are exact for it up to
the linearisation, so the five-term decomposition collapses onto leave-one-out retraining.

Shapes: ``x`` ``(B, *input_shape)`` is flattened to ``(B, prod(input_shape))`` and mapped by a
single ``Linear(prod(input_shape), output_dim)`` to logits ``(B, output_dim)``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ._common import check_input, check_shape


class LogisticRegression(nn.Module):
    """Flatten + one affine layer; outputs logits (no softmax)."""

    def __init__(self, input_shape: tuple[int, ...], output_dim: int) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.linear = nn.Linear(math.prod(self.input_shape), output_dim)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.input_shape, "logistic_regression")
        return self.linear(x.flatten(start_dim=1))


def build(input_shape: tuple[int, ...], output_dim: int) -> LogisticRegression:
    """Build :class:`LogisticRegression` for examples of shape ``input_shape``."""
    return LogisticRegression(check_shape(input_shape), output_dim)
