"""Small-image AlexNet (Bae et al. 2022, Section 6.1 / Appendix E.3).

The ImageNet AlexNet (Krizhevsky et al. 2012) adapted to 28x28 / 32x32 inputs, as is common
for MNIST / CIFAR-10 experiments.

Layers (output shape for a 32x32 / 28x28 input at ``width_mult=1``)::

    conv1  Conv 3x3 C->64, pad 1; ReLU; MaxPool 2      64x16x16  / 64x14x14
    conv2  Conv 3x3 64->192, pad 1; ReLU; MaxPool 2    192x8x8   / 192x7x7
    conv3  Conv 3x3 192->384, pad 1; ReLU              384x8x8   / 384x7x7
    conv4  Conv 3x3 384->256, pad 1; ReLU              256x8x8   / 256x7x7
    conv5  Conv 3x3 256->256, pad 1; ReLU; MaxPool 2   256x4x4   / 256x3x3
    fc1    Linear(flat, hidden); ReLU                  4096->512 / 2304->512
    fc2    Linear(hidden, hidden); ReLU                512->512
    fc3    Linear(hidden, output_dim)                  512->output_dim

All convolutions are 3x3 with stride 1 and padding 1; pooling is 2x2 max-pooling with stride 2
(floor mode). The conv channel counts are multiplied by ``width_mult`` (rounded, at least 1);
``hidden`` is the width of the two hidden fully connected layers. There is no local response
normalisation, no batch norm and no dropout, so outputs are a deterministic function of the
parameters and the single example. PyTorch's default initialisation is used.

Shapes: ``x`` ``(B, C, H, W)`` -> logits ``(B, output_dim)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._common import (
    check_input,
    check_int,
    check_positive_float,
    check_shape,
    conv_out,
    scale_channels,
)

CONV_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)
POOL_AFTER: tuple[bool, ...] = (True, True, False, False, True)


class AlexNet(nn.Module):
    """Five 3x3 conv layers (three followed by 2x2 max-pool) and three FC layers."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        output_dim: int,
        hidden: int = 512,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        c_in, h, w = self.input_shape
        layers: list[nn.Module] = []
        for c, pool in zip(CONV_CHANNELS, POOL_AFTER, strict=True):
            c_out = scale_channels(c, width_mult)
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
                h, w = conv_out(h, 2, stride=2), conv_out(w, 2, stride=2)
            c_in = c_out
        if min(h, w) < 1:
            raise ValueError(f"input_shape {self.input_shape} is too small for alexnet")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(c_in * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, output_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.input_shape, "alexnet")
        return self.classifier(self.features(x).flatten(start_dim=1))


def build(
    input_shape: tuple[int, ...],
    output_dim: int,
    *,
    hidden: int = 512,
    width_mult: float = 1.0,
) -> AlexNet:
    """Build :class:`AlexNet` for ``(C, H, W)`` images (see the module docstring)."""
    shape = check_shape(input_shape, ndim=3, what="alexnet")
    return AlexNet(
        (shape[0], shape[1], shape[2]),
        output_dim,
        hidden=check_int("hidden", hidden),
        width_mult=check_positive_float("width_mult", width_mult),
    )
