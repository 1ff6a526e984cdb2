"""One typed option model per network, generated from the builder's own signature.

``MODEL_OPTIONS[name]`` is a frozen pydantic model with ``name`` (the discriminator), ``seed``
and exactly the keyword arguments of ``pbrf.models.<name>.build`` — same names, types and
defaults, so a builder's signature stays the single place where an option is defined. An
option a model does not take is rejected at validation time, naming the field.

:func:`check_fits` builds the network on PyTorch's ``meta`` device (no memory, no compute), which
runs every argument check of the builder against a concrete input shape: a convolutional net
on flat tabular inputs, or a bad width, fails before anything is trained.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, create_model
from torch import nn


class ModelOptions(BaseModel):
    """Base of the generated option models."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def builder_kwargs(self) -> dict[str, Any]:
        """The builder's keyword arguments (everything but ``name`` and ``seed``)."""
        return self.model_dump(exclude={"name", "seed"})


def options_model(name: str, builder: Callable[..., nn.Module]) -> type[ModelOptions]:
    """A :class:`ModelOptions` subclass mirroring ``builder``'s keyword-only arguments."""
    hints = typing.get_type_hints(builder)
    fields: dict[str, Any] = {
        "name": (Literal[name], Field(name, description="network architecture")),
        "seed": (int, Field(0, ge=0, description="initialisation seed of θ⁰")),
    }
    for p in inspect.signature(builder).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            fields[p.name] = (hints.get(p.name, Any), Field(p.default))
    title = "".join(part.capitalize() for part in name.split("_")) + "Options"
    return create_model(title, __base__=ModelOptions, **fields)


def check_fits(
    build: Callable[..., nn.Module], input_shape: tuple[int, ...], output_dim: int, **kwargs: Any
) -> int:
    """Build on the ``meta`` device and return the parameter count d; raises the builder's error."""
    with torch.device("meta"):
        module = build(input_shape, output_dim, **kwargs)
    return sum(p.numel() for p in module.parameters())
