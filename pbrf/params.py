"""Flat-vector views of a model's parameters.

Solvers and influence work on flat vectors θ ∈ R^d (Eq. 4); the model is called through
``torch.func.functional_call`` with a name → tensor dict. :class:`ParamSpec` converts between
the two, for one model (shape ``(d,)``) or for a stack of M models (shape ``(M, d)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]


@dataclass(frozen=True)
class ParamSpec:
    """Names and shapes of a module's parameters, in ``named_parameters`` order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, module: nn.Module) -> ParamSpec:
        named = list(module.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(p.shape for _, p in named))

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def dim(self) -> int:
        """d, the number of parameters."""
        return sum(self.numels)

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """Dict of (optionally stacked, leading dims ``*B``) tensors → ``(*B, d)``."""
        first = params[self.names[0]]
        batch = first.shape[: first.dim() - len(self.shapes[0])]
        return torch.cat([params[n].reshape(*batch, -1) for n in self.names], dim=-1)

    def unflatten(self, flat: Tensor) -> Params:
        """``(*B, d)`` → dict of tensors with shapes ``(*B, *shape)`` (views, no copy)."""
        if flat.shape[-1] != self.dim:
            raise ValueError(f"flat vector has {flat.shape[-1]} entries, model has {self.dim}")
        batch = flat.shape[:-1]
        pieces = torch.split(flat, self.numels, dim=-1)
        return {
            n: p.reshape(*batch, *s)
            for n, p, s in zip(self.names, pieces, self.shapes, strict=True)
        }


def flat_params(module: nn.Module) -> Tensor:
    """The module's current parameters as one detached flat vector ``(d,)``."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def load_flat_(module: nn.Module, flat: Tensor) -> nn.Module:
    """Copy a flat vector ``(d,)`` into the module's parameters, in place."""
    spec = ParamSpec.of(module)
    with torch.no_grad():
        for p, v in zip(module.parameters(), spec.unflatten(flat).values(), strict=True):
            p.copy_(v)
    return module


def functional_model(module: nn.Module) -> tuple[Callable[[Tensor, Tensor], Tensor], ParamSpec]:
    """Return ``f(θ_flat, x) -> y`` for ``module`` and its :class:`ParamSpec`.

    ``f`` is pure: it never reads the module's own parameter values, so it can be
    differentiated (``jvp``/``vjp``/``grad``) and vmapped over θ.
    """
    spec = ParamSpec.of(module)

    def f(theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(module, spec.unflatten(theta), (x,))

    return f, spec
