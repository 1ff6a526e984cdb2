"""Tests for :mod:`pbrf.models`: shapes, seeding, and purity of f(θ, x) under torch.func.

Functional tests use tiny widths so that the whole file runs in seconds on a CPU; only the
parameter-count tests build full-size networks (and never run them).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from pbrf.models import (
    MODEL_INPUTS,
    MODEL_NAMES,
    MODEL_OPTIONS,
    build_model,
    model_kwargs,
    model_names,
)

EXPECTED_NAMES = (
    "logistic_regression",
    "mlp",
    "autoencoder",
    "lenet",
    "alexnet",
    "vgg13",
    "resnet20",
    "transformer_lm",
)

# name -> (input_shape, output_dim, kwargs): small configurations for the functional tests.
TINY: dict[str, tuple[tuple[int, ...], int, dict[str, Any]]] = {
    "logistic_regression": ((2, 3), 4, {}),
    "mlp": ((5,), 3, {"width": 8, "depth": 2}),
    "autoencoder": ((16,), 16, {"widths": [16, 8, 4, 8, 16]}),
    "lenet": ((1, 28, 28), 10, {}),
    "alexnet": ((3, 32, 32), 5, {"width_mult": 1 / 16, "hidden": 16}),
    "vgg13": ((3, 32, 32), 5, {"width_mult": 1 / 16}),
    "resnet20": ((3, 12, 12), 5, {"width_mult": 0.25}),
    "transformer_lm": ((7,), 11, {"d_model": 16, "n_heads": 2, "n_layers": 2}),
}


def tiny(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    shape, out, kwargs = TINY[name]
    return build_model(name, input_shape=shape, output_dim=out, seed=seed, **kwargs).to(dtype)


def make_input(
    name: str, batch: int, dtype: torch.dtype = torch.float32, seed: int = 123
) -> Tensor:
    shape, out, _ = TINY[name]
    gen = torch.Generator().manual_seed(seed)
    if name == "transformer_lm":
        return torch.randint(0, out, (batch, *shape), generator=gen)
    return torch.randn(batch, *shape, generator=gen, dtype=dtype)


def expected_shape(name: str, batch: int) -> tuple[int, ...]:
    shape, out, _ = TINY[name]
    return (batch, shape[0], out) if name == "transformer_lm" else (batch, out)


def params_of(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def random_like(params: dict[str, Tensor], seed: int) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}


all_models = pytest.mark.parametrize("name", MODEL_NAMES)


def test_registry() -> None:
    """The paper's networks are registered, each with typed options and declared inputs and each
    exercised by the functional tests below; an unknown name is refused naming the valid ones."""
    assert set(EXPECTED_NAMES) <= set(MODEL_NAMES)
    assert set(TINY) == set(MODEL_NAMES) == set(MODEL_OPTIONS) == set(MODEL_INPUTS)
    names = model_names()
    names.append("no_such_model")  # a copy: callers cannot register by mutation
    assert model_names() == list(MODEL_NAMES)
    with pytest.raises(ValueError, match="unknown model name 'no_such_model'; valid names: "):
        build_model("no_such_model", input_shape=(2,), output_dim=1)


@all_models
def test_output_shape(name: str) -> None:
    model = tiny(name)
    y = model(make_input(name, 3))
    assert y.shape == expected_shape(name, 3)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@all_models
def test_no_buffers_batchnorm_or_dropout(name: str) -> None:
    model = tiny(name)
    assert list(model.buffers()) == []
    banned = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.Dropout)
    assert not any(isinstance(m, banned) for m in model.modules())


@all_models
def test_seed_determinism(name: str) -> None:
    a, b, c = params_of(tiny(name, seed=0)), params_of(tiny(name, seed=0)), params_of(tiny(name, 1))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@all_models
def test_build_does_not_touch_global_rng(name: str) -> None:
    torch.manual_seed(2024)
    before = torch.get_rng_state()
    tiny(name, seed=7)
    assert torch.equal(torch.get_rng_state(), before)


@all_models
def test_vmap_over_stacked_params_matches_loop(name: str) -> None:
    models = [tiny(name, seed=s, dtype=torch.float64) for s in range(3)]
    base = models[0]
    stacked = {k: torch.stack([params_of(m)[k] for m in models]) for k in params_of(base)}
    x = make_input(name, 2, torch.float64)
    out = vmap(lambda p, xx: functional_call(base, p, (xx,)), in_dims=(0, None))(stacked, x)
    loop = torch.stack([functional_call(base, params_of(m), (x,)) for m in models])
    assert out.shape == (3, *expected_shape(name, 2))
    torch.testing.assert_close(out, loop, rtol=1e-10, atol=1e-12)


@all_models
def test_output_is_per_example(name: str) -> None:
    model = tiny(name, dtype=torch.float64)
    x = make_input(name, 4, torch.float64)
    with torch.no_grad():
        alone, in_batch = model(x[:1]), model(x)[:1]
    torch.testing.assert_close(alone, in_batch, rtol=0, atol=1e-12)


@all_models
def test_jvp_matches_central_finite_difference(name: str) -> None:
    model = tiny(name, dtype=torch.float64)
    params = params_of(model)
    tangent = random_like(params, seed=5)
    x = make_input(name, 2, torch.float64)

    def f(p: dict[str, Tensor]) -> Tensor:
        return functional_call(model, p, (x,))

    y, dy = jvp(f, (params,), (tangent,))
    eps = 1e-6
    plus = f({k: v + eps * tangent[k] for k, v in params.items()})
    minus = f({k: v - eps * tangent[k] for k, v in params.items()})
    fd = (plus - minus) / (2 * eps)
    torch.testing.assert_close(y, f(params), rtol=0, atol=0)
    assert dy.abs().max() > 0
    torch.testing.assert_close(dy, fd, rtol=1e-6, atol=1e-6 * float(dy.abs().max()))


@all_models
def test_func_grad_and_vjp_match_autograd(name: str) -> None:
    model = tiny(name, dtype=torch.float64)
    params = params_of(model)
    x = make_input(name, 2, torch.float64)
    weights = torch.randn(
        expected_shape(name, 2), generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )

    def loss(p: dict[str, Tensor]) -> Tensor:
        return (functional_call(model, p, (x,)) * weights).sum()

    g = grad(loss)(params)
    _, pullback = vjp(lambda p: functional_call(model, p, (x,)), params)
    (g_vjp,) = pullback(weights)
    model.zero_grad()
    (model(x) * weights).sum().backward()
    for k, p in model.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(g[k], p.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g_vjp[k], p.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["lenet", "alexnet", "vgg13", "resnet20"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_image_models_accept_mnist_and_cifar_shapes(name: str, shape: tuple[int, ...]) -> None:
    _, _, kwargs = TINY[name]
    model = build_model(name, input_shape=shape, output_dim=10, **kwargs)
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_dense_models_accept_image_shapes() -> None:
    for name, kwargs in [("logistic_regression", {}), ("mlp", {"width": 4})]:
        model = build_model(name, input_shape=(1, 28, 28), output_dim=10, **kwargs)
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    model = build_model("autoencoder", input_shape=(1, 4, 4), output_dim=16, widths=[16, 3, 16])
    assert model(torch.randn(3, 1, 4, 4)).shape == (3, 16)


@pytest.mark.parametrize("name", ["vgg13", "resnet20"])
def test_norm_none_variant(name: str) -> None:
    shape, out, kwargs = TINY[name]
    model = build_model(name, input_shape=shape, output_dim=out, norm="none", **kwargs)
    assert not any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert model(make_input(name, 2)).shape == (2, out)
    grouped = build_model(name, input_shape=shape, output_dim=out, **kwargs)
    assert any(isinstance(m, nn.GroupNorm) for m in grouped.modules())


def test_wrong_input_shape_raises() -> None:
    model = tiny("lenet")
    with pytest.raises(ValueError, match="lenet"):
        model(torch.randn(2, 3, 32, 32))


def test_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="resnet999") as info:
        build_model("resnet999", input_shape=(3, 32, 32), output_dim=10)
    assert "resnet20" in str(info.value)


def test_autoencoder_output_dim_must_match_input() -> None:
    with pytest.raises(ValueError, match="output_dim"):
        build_model("autoencoder", input_shape=(1, 28, 28), output_dim=10)
    with pytest.raises(ValueError, match="widths"):
        build_model("autoencoder", input_shape=(16,), output_dim=16, widths=[15, 4, 16])


def test_bad_kwargs_raise_naming_the_kwarg() -> None:
    with pytest.raises(TypeError, match="widht"):
        build_model("mlp", input_shape=(5,), output_dim=2, widht=3)
    with pytest.raises(ValueError, match="activation"):
        build_model("mlp", input_shape=(5,), output_dim=2, activation="swish")
    with pytest.raises(ValueError, match="width_mult"):
        build_model("resnet20", input_shape=(3, 8, 8), output_dim=2, width_mult=-1.0)
    with pytest.raises(ValueError, match="norm"):
        build_model("vgg13", input_shape=(3, 8, 8), output_dim=2, norm="batch")
    with pytest.raises(ValueError, match="n_heads"):
        build_model("transformer_lm", input_shape=(8,), output_dim=5, d_model=10, n_heads=3)
    with pytest.raises(TypeError, match="depth"):
        build_model("mlp", input_shape=(5,), output_dim=2, depth=2.5)
    with pytest.raises(ValueError, match="input_shape"):
        build_model("lenet", input_shape=(784,), output_dim=10)
    assert model_kwargs("mlp") == {
        "width": 128,
        "depth": 2,
        "activation": "relu",
        "widths": None,
    }


def test_mlp_configuration() -> None:
    default = build_model("mlp", input_shape=(30,), output_dim=1)
    linears = [m for m in default.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(30, 128), (128, 128), (128, 1)]
    assert sum(isinstance(m, nn.ReLU) for m in default.modules()) == 2
    custom = build_model("mlp", input_shape=(4,), output_dim=2, widths=[7, 5], activation="tanh")
    linears = [m for m in custom.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 7), (7, 5), (5, 2)]
    assert sum(isinstance(m, nn.Tanh) for m in custom.modules()) == 2


def test_autoencoder_default_layout() -> None:
    model = build_model("autoencoder", input_shape=(784,), output_dim=784)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    widths = [linears[0].in_features] + [m.out_features for m in linears]
    assert widths == [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    # 7 hidden layers, all sigmoid except the linear 30-unit code layer; no output activation.
    layers = list(model.net)
    assert sum(isinstance(m, nn.Sigmoid) for m in layers) == 6
    code = next(
        i for i, m in enumerate(layers) if isinstance(m, nn.Linear) and m.out_features == 30
    )
    assert isinstance(layers[code + 1], nn.Linear)
    assert isinstance(layers[-1], nn.Linear)
    assert sum(p.numel() for p in model.parameters()) == 2_837_314


def test_resnet20_standard_parameter_count() -> None:
    model = build_model("resnet20", input_shape=(3, 32, 32), output_dim=10)
    n = sum(p.numel() for p in model.parameters())
    assert n == 269_722
    assert 260_000 <= n <= 280_000
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19  # + 1 linear = 20 weight layers (option-A shortcuts)


def test_transformer_lm_default_builds_and_is_causal() -> None:
    model = build_model(
        "transformer_lm", input_shape=(32,), output_dim=100, d_model=256, n_heads=2, n_layers=2
    )
    assert sum(p.numel() for p in model.parameters()) == 1_639_524
    small = tiny("transformer_lm", dtype=torch.float64)
    x = make_input("transformer_lm", 2)
    x2 = x.clone()
    x2[:, 4:] = (x2[:, 4:] + 1) % TINY["transformer_lm"][1]
    with torch.no_grad():
        y, y2 = small(x), small(x2)
        assert small(x[:, :4]).shape == (2, 4, TINY["transformer_lm"][1])
    torch.testing.assert_close(y[:, :4], y2[:, :4], rtol=0, atol=1e-12)
    assert not torch.allclose(y[:, 4:], y2[:, 4:])
