"""Model zoo of the reproduction of Bae et al. (2022), Section 6.1 / Appendix E.3.

``build_model(name, input_shape=..., output_dim=..., seed=...)`` builds one of the networks
used in the paper's experiments. Conventions shared by all of them:

* ``input_shape`` is the shape of ONE example (no batch dim); a batch ``x`` of shape
  ``(B, *input_shape)`` maps to pre-activation outputs ``(B, output_dim)`` (logits or raw
  regression values), except ``transformer_lm``: ``(B, T)`` int64 ids -> ``(B, T, vocab)``.
* ``f(θ, x)`` is a pure deterministic function of the parameters and the single example:
  no dropout, no BatchNorm (GroupNorm where a norm is needed), no buffers at all. The
  models therefore work with ``torch.func.functional_call`` under ``vmap`` over stacked
  parameters and under ``jvp`` / ``vjp`` / ``grad`` with respect to the parameters, in float32
  or float64.
* Initialisation is a deterministic function of ``seed`` and leaves the global RNG untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import alexnet, autoencoder, lenet, logistic_regression, mlp, resnet20, transformer_lm, vgg13
from ._common import check_int, check_shape
from .options import ModelOptions, check_fits, options_model

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "logistic_regression": logistic_regression.build,
    "mlp": mlp.build,
    "autoencoder": autoencoder.build,
    "lenet": lenet.build,
    "alexnet": alexnet.build,
    "vgg13": vgg13.build,
    "resnet20": resnet20.build,
    "transformer_lm": transformer_lm.build,
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)

# name -> typed option model (``name``, ``seed`` and the builder's keyword arguments)
MODEL_OPTIONS: dict[str, type[ModelOptions]] = {
    name: options_model(name, builder) for name, builder in _BUILDERS.items()
}

# What data each network can take: the kind of input it reads and the tasks it can solve.
# "image" inputs are (C, H, W); "tabular" are flat vectors; "text" are token-id sequences.
MODEL_INPUTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "logistic_regression": (
        frozenset({"tabular", "image"}),
        frozenset({"binary", "multiclass"}),
    ),
    "mlp": (
        frozenset({"tabular", "image"}),
        frozenset({"binary", "multiclass", "regression", "reconstruction"}),
    ),
    "autoencoder": (frozenset({"tabular", "image"}), frozenset({"reconstruction"})),
    **{
        cnn: (frozenset({"image"}), frozenset({"binary", "multiclass"}))
        for cnn in ("lenet", "alexnet", "vgg13", "resnet20")
    },
    "transformer_lm": (frozenset({"text"}), frozenset({"language_model"})),
}

__all__ = [
    "MODEL_INPUTS",
    "MODEL_NAMES",
    "MODEL_OPTIONS",
    "ModelOptions",
    "build_from_options",
    "build_model",
    "check_fits",
    "model_kwargs",
    "model_names",
    "parameter_count",
]


def model_names() -> list[str]:
    """The registered model names, in registry order."""
    return list(MODEL_NAMES)


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name]


def model_kwargs(name: str) -> dict[str, Any]:
    """The extra keyword arguments model ``name`` accepts, with their defaults."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    output_dim: int,
    seed: int = 0,
    **kwargs: Any,
) -> nn.Module:
    """Build registered model ``name`` with parameters initialised from ``seed``.

    Args:
        name: one of :data:`MODEL_NAMES`.
        input_shape: shape of one example, e.g. ``(30,)``, ``(1, 28, 28)``, ``(seq_len,)``.
        output_dim: output width (classes, regression targets, pixels, or vocabulary size).
        seed: initialisation seed; the global torch RNG state is left unchanged.
        **kwargs: model-specific options (see :func:`model_kwargs`).

    Raises:
        ValueError: unknown ``name``, or an invalid shape / option value.
        TypeError: an option the model does not take, or of the wrong type.
    """
    builder = _builder(name)
    accepted = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"model {name!r} got unexpected keyword argument(s) {unknown}; "
            f"it accepts {sorted(accepted)}"
        )
    shape = check_shape(input_shape)
    output_dim = check_int("output_dim", output_dim)
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(shape, output_dim, **kwargs)
    return model


def build_from_options(
    options: ModelOptions, *, input_shape: tuple[int, ...], output_dim: int
) -> nn.Module:
    """:func:`build_model` from a validated option model (``MODEL_OPTIONS[name]``)."""
    return build_model(
        options.name,  # type: ignore[attr-defined]
        input_shape=input_shape,
        output_dim=output_dim,
        seed=options.seed,  # type: ignore[attr-defined]
        **options.builder_kwargs(),
    )


def parameter_count(options: ModelOptions, *, input_shape: tuple[int, ...], output_dim: int) -> int:
    """d for these options and data shapes, without allocating (raises the builder's error)."""
    return check_fits(
        _builder(options.name),  # type: ignore[attr-defined]
        check_shape(input_shape),
        output_dim,
        **options.builder_kwargs(),
    )
