"""Deep MNIST autoencoder (Bae et al. 2022, Section 6.1 / Appendix E.3).

The 8-layer autoencoder of Hinton & Salakhutdinov (2006) as used by Martens & Grosse (2015,
K-FAC): layer widths ``[784, 1000, 500, 250, 30, 250, 500, 1000, 784]``, logistic (sigmoid)
units on every hidden layer except the narrowest "code" layer (30 units), which is linear.
The output layer has no activation: it returns the logits of the reconstruction, to be used
with a sigmoid binary cross-entropy loss elsewhere. Initialisation is PyTorch's default
``nn.Linear`` one (not the sparse initialisation of Martens 2010).

Shapes: ``x`` ``(B, *input_shape)`` (e.g. ``(B, 784)`` or ``(B, 1, 28, 28)``) is flattened to
``(B, n)`` with ``n = prod(input_shape)``; the output is ``(B, n)`` logits, so ``output_dim``
must equal ``n``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from ._common import check_input, check_int_list, check_shape

DEFAULT_HIDDEN: tuple[int, ...] = (1000, 500, 250, 30, 250, 500, 1000)


class Autoencoder(nn.Module):
    """Stack of ``Linear`` layers; sigmoid after each hidden layer except the code layer."""

    def __init__(self, input_shape: tuple[int, ...], widths: Sequence[int]) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.widths = list(widths)
        hidden = self.widths[1:-1]
        # The code layer is the narrowest hidden layer (first one if tied); it stays linear.
        self.code_layer = hidden.index(min(hidden)) if hidden else -1
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(self.widths)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(hidden) and i != self.code_layer:
                layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.input_shape, "autoencoder")
        return self.net(x.flatten(start_dim=1))


def build(
    input_shape: tuple[int, ...],
    output_dim: int,
    *,
    widths: Sequence[int] | None = None,
) -> Autoencoder:
    """Build an :class:`Autoencoder`.

    ``widths`` is the full list of layer widths including input and output (default
    ``[n, 1000, 500, 250, 30, 250, 500, 1000, n]`` with ``n = prod(input_shape)``); its first
    and last entries, and ``output_dim``, must all equal ``n``.
    """
    shape = check_shape(input_shape)
    n = math.prod(shape)
    if output_dim != n:
        raise ValueError(
            f"autoencoder output_dim must equal the input size prod({shape}) = {n}, "
            f"got output_dim={output_dim}"
        )
    full = (
        [n, *DEFAULT_HIDDEN, n] if widths is None else check_int_list("widths", widths, min_len=2)
    )
    if full[0] != n or full[-1] != n:
        raise ValueError(
            f"autoencoder widths must start and end with the input size {n}, got {full}"
        )
    return Autoencoder(shape, full)
