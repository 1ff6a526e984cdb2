"""LeNet-5 convolutional network (Bae et al. 2022, Section 6.1 / Appendix E.3).

Layout (LeCun et al. 1998, with the modern ReLU/max-pool choices):
``conv 6@5x5 -> act -> maxpool 2 -> conv 16@5x5 -> act -> maxpool 2 -> flatten ->
fc 120 -> act -> fc 84 -> act -> fc output_dim``.
The first convolution uses ``padding=2`` when the image is smaller than 32x32 in either
spatial dimension (so a 28x28 MNIST digit gets the 28x28 -> 14x14 -> 10x10 -> 5x5 maps of the
original 32x32 layout) and ``padding=0`` otherwise (CIFAR 32x32 -> 28 -> 14 -> 10 -> 5). The
flattened size is computed from ``input_shape``. No normalisation, no dropout.

Shapes: ``x`` ``(B, C, H, W)`` -> logits ``(B, output_dim)``; e.g. ``(1, 28, 28)`` or
``(3, 32, 32)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._common import check_input, check_shape, conv_out, make_activation


class LeNet5(nn.Module):
    """LeNet-5: two 5x5 conv/pool stages and three fully connected layers."""

    def __init__(
        self, input_shape: tuple[int, int, int], output_dim: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        c, h, w = self.input_shape
        pad = 2 if min(h, w) < 32 else 0
        sizes = [h, w]
        for i in range(2):
            sizes = [conv_out(s, 5, padding=pad if i == 0 else 0) for s in sizes]
            sizes = [conv_out(s, 2, stride=2) for s in sizes]
        if min(sizes) < 1:
            raise ValueError(f"input_shape {self.input_shape} is too small for lenet")
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, kernel_size=5, padding=pad),
            make_activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            make_activation(activation),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * sizes[0] * sizes[1], 120),
            make_activation(activation),
            nn.Linear(120, 84),
            make_activation(activation),
            nn.Linear(84, output_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.input_shape, "lenet")
        return self.classifier(self.features(x).flatten(start_dim=1))


def build(input_shape: tuple[int, ...], output_dim: int, *, activation: str = "relu") -> LeNet5:
    """Build :class:`LeNet5` for ``(C, H, W)`` images; ``activation`` in relu|tanh|sigmoid|gelu."""
    shape = check_shape(input_shape, ndim=3, what="lenet")
    make_activation(activation)
    return LeNet5((shape[0], shape[1], shape[2]), output_dim, activation)
