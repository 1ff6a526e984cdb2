"""CIFAR ResNet-20 with GroupNorm (Bae et al. 2022, Section 6.1 / Appendix E.3).

The 20-layer CIFAR ResNet of He et al. (2016, "Deep Residual Learning", Section 4.2):
a ``Conv 3x3 -> norm -> ReLU`` stem with 16 channels, three stages of three basic blocks
with 16, 32 and 64 channels (the first block of stages 2 and 3 has stride 2), global average
pooling and a ``Linear(64, output_dim)`` classifier: 6 * 3 + 2 = 20 weight layers.

A basic block is ``conv3x3(stride) -> norm -> ReLU -> conv3x3 -> norm``, added to the shortcut,
then ReLU. Shortcuts are He et al.'s **option A**, parameter-free: when the shape changes
the identity is subsampled spatially (``x[:, :, ::2, ::2]``) and zero-padded in channels.
With ``width_mult=1`` and a 3-channel 32x32 input and 10 classes the network has 269,722
parameters (0.27M, as in He et al.'s Table 6; the GroupNorm affine parameters replace the
BatchNorm ones one for one).

Normalisation is ``GroupNorm`` (``norm="group"``, default; ``gn_groups`` groups, reduced to the
largest divisor of the channel count) or nothing (``norm="none"``, in which case convolutions
get biases). BatchNorm is deliberately not used: its batch statistics would make ``f(θ, x)``
depend on the other examples in the batch, which breaks the per-example response functions
of the paper and ``vmap`` over models. Conv weights use Kaiming-normal (fan-in, ReLU) init.
Channel counts are multiplied by ``width_mult`` (rounded, at least 1).

Shapes: ``x`` ``(B, C, H, W)`` (any C, e.g. ``(1, 28, 28)`` or ``(3, 32, 32)``) -> logits
``(B, output_dim)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    NORMS,
    check_choice,
    check_input,
    check_int,
    check_positive_float,
    check_shape,
    norm_layer,
    scale_channels,
)

STAGE_CHANNELS: tuple[int, ...] = (16, 32, 64)
BLOCKS_PER_STAGE = 3


def _conv3x3(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=bias)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an option-A (parameter-free) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, gn_groups: int) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = _conv3x3(c_in, c_out, stride, bias)
        self.norm1 = norm_layer(norm, c_out, gn_groups)
        self.conv2 = _conv3x3(c_out, c_out, 1, bias)
        self.norm2 = norm_layer(norm, c_out, gn_groups)
        self.stride = stride
        self.pad_front = (c_out - c_in) // 2
        self.pad_back = c_out - c_in - self.pad_front

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_front or self.pad_back:
            x = F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """Stem, 3 stages x 3 :class:`BasicBlock`, global average pool, linear classifier."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        output_dim: int,
        norm: str = "group",
        width_mult: float = 1.0,
        gn_groups: int = 8,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        widths = [scale_channels(c, width_mult) for c in STAGE_CHANNELS]
        self.conv1 = _conv3x3(self.input_shape[0], widths[0], 1, bias=norm == "none")
        self.norm1 = norm_layer(norm, widths[0], gn_groups)
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for stage, c_out in enumerate(widths):
            for b in range(BLOCKS_PER_STAGE):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(BasicBlock(c_in, c_out, stride, norm, gn_groups))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(c_in, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.input_shape, "resnet20")
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.blocks(out)
        return self.linear(out.mean(dim=(2, 3)))


def build(
    input_shape: tuple[int, ...],
    output_dim: int,
    *,
    norm: str = "group",
    width_mult: float = 1.0,
    gn_groups: int = 8,
) -> ResNet20:
    """Build :class:`ResNet20` for ``(C, H, W)`` images (see the module docstring)."""
    shape = check_shape(input_shape, ndim=3, what="resnet20")
    return ResNet20(
        (shape[0], shape[1], shape[2]),
        output_dim,
        norm=check_choice("norm", norm, NORMS),
        width_mult=check_positive_float("width_mult", width_mult),
        gn_groups=check_int("gn_groups", gn_groups),
    )
