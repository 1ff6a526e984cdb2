"""Shared argument checks and building blocks for :mod:`pbrf.models`.

Every model of the package is a pure function ``f(θ, x)`` of its parameters and of one
example (Bae et al. 2022, Section 2 and Eq. 4): no dropout, no batch statistics, no buffers
that change in ``forward``. The helpers here enforce the argument conventions that all
builders share, so that bad configurations fail at build time with a message naming the
offending argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}
NORMS: tuple[str, ...] = ("group", "none")


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) ``>= minimum``; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_positive_float(name: str, value: object) -> float:
    """Return ``float(value)`` for a finite positive real; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; raise ``ValueError`` naming both otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_int_list(name: str, value: object, *, min_len: int = 0) -> list[int]:
    """Return ``list(value)`` for a sequence of positive ints of length ``>= min_len``."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of positive ints, got {type(value).__name__}")
    out = [check_int(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if len(out) < min_len:
        raise ValueError(f"{name} must have at least {min_len} entries, got {len(out)}")
    return out


def check_shape(input_shape: object, *, ndim: int | None = None, what: str = "") -> tuple[int, ...]:
    """Validate ``input_shape`` (one example, no batch dim) and return it as a tuple."""
    if isinstance(input_shape, str | bytes) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a tuple of ints, got {type(input_shape).__name__}")
    shape = tuple(check_int(f"input_shape[{i}]", s) for i, s in enumerate(input_shape))
    if not shape:
        raise ValueError("input_shape must have at least one dimension")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"input_shape for {what} must have {ndim} dimension(s), got {shape}")
    return shape


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` in :data:`ACTIVATIONS`."""
    return ACTIVATIONS[check_choice("activation", name, tuple(ACTIVATIONS))]()


def scale_channels(channels: int, width_mult: float) -> int:
    """``round(channels * width_mult)``, at least 1."""
    return max(1, round(channels * width_mult))


def num_groups(channels: int, max_groups: int) -> int:
    """Largest divisor of ``channels`` that is ``<= max_groups`` (the GroupNorm group count)."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def norm_layer(norm: str, channels: int, max_groups: int) -> nn.Module:
    """``GroupNorm`` (per-example statistics, see module docstring) or ``Identity``."""
    if norm == "group":
        return nn.GroupNorm(num_groups(channels, max_groups), channels)
    return nn.Identity()


def check_input(x: Tensor, input_shape: tuple[int, ...], model: str) -> None:
    """Raise ``ValueError`` unless ``x`` has shape ``(B, *input_shape)``."""
    if x.dim() != len(input_shape) + 1 or tuple(x.shape[1:]) != input_shape:
        raise ValueError(
            f"{model} expects input of shape (B, {', '.join(map(str, input_shape))}), "
            f"got {tuple(x.shape)}"
        )


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a convolution or pooling layer (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1
