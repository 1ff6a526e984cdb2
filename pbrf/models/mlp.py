"""Fully connected multilayer perceptron (Bae et al. 2022, Section 6.1 / Appendix E.3).

The paper's small regression/classification experiments use a 2-hidden-layer ReLU MLP; the
defaults here (``depth=2``, ``width=128``, ``activation="relu"``) build that network.

Shapes: ``x`` ``(B, *input_shape)`` is flattened to ``(B, prod(input_shape))``, passed through
``Linear -> activation`` for every hidden width, then a final ``Linear`` to ``(B, output_dim)``
raw outputs (logits or regression values). No dropout and no normalisation, so the output
for an example depends only on the parameters and that example.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from ._common import check_input, check_int, check_int_list, check_shape, make_activation


class MLP(nn.Module):
    """``Linear`` layers of the given hidden ``widths`` with a shared activation in between."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        output_dim: int,
        widths: Sequence[int],
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.widths = list(widths)
        sizes = [math.prod(self.input_shape), *self.widths, output_dim]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(make_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.input_shape, "mlp")
        return self.net(x.flatten(start_dim=1))


def build(
    input_shape: tuple[int, ...],
    output_dim: int,
    *,
    width: int = 128,
    depth: int = 2,
    activation: str = "relu",
    widths: Sequence[int] | None = None,
) -> MLP:
    """Build an :class:`MLP`.

    ``depth`` hidden layers of ``width`` units each, unless ``widths`` (the list of hidden
    widths, possibly empty) is given, which overrides ``width`` and ``depth``.
    """
    shape = check_shape(input_shape)
    if widths is None:
        hidden = [check_int("width", width)] * check_int("depth", depth, minimum=0)
    else:
        hidden = check_int_list("widths", widths)
    make_activation(activation)  # validates the name before any layer is built
    return MLP(shape, output_dim, hidden, activation)
