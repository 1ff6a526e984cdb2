"""A network's size without allocating it: parameters and activations per example (on ``meta``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pbrf.models import build_from_options


def activation_elements(module: nn.Module, input_shape: tuple[int, ...], *, tokens: bool) -> int:
    """Elements of every leaf module's output for ONE example (a forward pass on ``meta``)."""
    total = 0

    def hook(_m: nn.Module, _inp: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        dtype = torch.long if tokens else torch.float32
        x = torch.zeros((1, *input_shape), dtype=dtype, device="meta")
        with torch.no_grad():
            out = module.to("meta")(x)
        total += out.numel() + math.prod(input_shape)
    finally:
        for h in handles:
            h.remove()
    return total


def footprint(
    options: Any, input_shape: tuple[int, ...], output_dim: int, *, tokens: bool
) -> tuple[int, int]:
    """``(d, activation elements per example)`` of the network ``options`` describes."""
    with torch.device("meta"):
        module = build_from_options(options, input_shape=input_shape, output_dim=output_dim)
    d = sum(p.numel() for p in module.parameters())
    return d, activation_elements(module, input_shape, tokens=tokens)


def dtype_bytes(name: str) -> int:
    """Bytes per element of the floating dtype ``name`` (``"float32"`` → 4)."""
    return torch.finfo(getattr(torch, name)).bits // 8


def device_memory(device: str) -> int:
    """Total memory of the CUDA device ``device``, in bytes."""
    return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
