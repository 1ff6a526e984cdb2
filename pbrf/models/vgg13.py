"""CIFAR-style VGG-13 with GroupNorm (Bae et al. 2022, Section 6.1 / Appendix E.3).

Configuration ``[64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M]`` of Simonyan &
Zisserman (2015): every number is ``Conv 3x3 (stride 1, pad 1) -> norm -> ReLU`` and ``M`` is a
2x2 max-pool, followed by a single ``Linear(512 * h * w, output_dim)`` classifier (the usual
CIFAR variant, no 4096-wide FC layers, no dropout).

Normalisation is ``GroupNorm`` (``norm="group"``, default; ``gn_groups`` groups, reduced to the
largest divisor of the channel count) or nothing (``norm="none"``). BatchNorm is deliberately
not used: its batch statistics would make ``f(θ, x)`` depend on the other examples in the
batch, which breaks the per-example response functions of the paper and ``vmap`` over models.
Convolutions carry a bias only when ``norm="none"``.

A max-pool is skipped when the feature map is already 1 pixel high or wide, so 32x32 inputs
go 32 -> 16 -> 8 -> 4 -> 2 -> 1 and 28x28 inputs go 28 -> 14 -> 7 -> 3 -> 1 (fifth pool
skipped); both end at 1x1, i.e. 512 features at ``width_mult=1``. Conv channels are multiplied
by ``width_mult`` (rounded, at least 1). Conv weights use Kaiming-normal (fan-in, ReLU) init,
biases zero, GroupNorm affine parameters (1, 0), the classifier PyTorch's default init.

Shapes: ``x`` ``(B, C, H, W)`` -> logits ``(B, output_dim)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._common import (
    NORMS,
    check_choice,
    check_input,
    check_int,
    check_positive_float,
    check_shape,
    conv_out,
    norm_layer,
    scale_channels,
)

CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG13(nn.Module):
    """VGG-13 feature extractor (conv/norm/ReLU, max-pools) and a linear classifier."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        output_dim: int,
        norm: str = "group",
        width_mult: float = 1.0,
        gn_groups: int = 32,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        c_in, h, w = self.input_shape
        layers: list[nn.Module] = []
        for item in CONFIG:
            if item == "M":
                if min(h, w) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    h, w = conv_out(h, 2, stride=2), conv_out(w, 2, stride=2)
                continue
            c_out = scale_channels(int(item), width_mult)
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=norm == "none")
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            layers += [conv, norm_layer(norm, c_out, gn_groups), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in * h * w, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.input_shape, "vgg13")
        return self.classifier(self.features(x).flatten(start_dim=1))


def build(
    input_shape: tuple[int, ...],
    output_dim: int,
    *,
    norm: str = "group",
    width_mult: float = 1.0,
    gn_groups: int = 32,
) -> VGG13:
    """Build :class:`VGG13` for ``(C, H, W)`` images (see the module docstring)."""
    shape = check_shape(input_shape, ndim=3, what="vgg13")
    return VGG13(
        (shape[0], shape[1], shape[2]),
        output_dim,
        norm=check_choice("norm", norm, NORMS),
        width_mult=check_positive_float("width_mult", width_mult),
        gn_groups=check_int("gn_groups", gn_groups),
    )
