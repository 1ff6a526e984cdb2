"""GNH and Hessian products against dense references (float64, tight tolerances)."""

from __future__ import annotations

import pytest
import torch
from tiny_problems import DTYPE, tiny_problem

from pbrf.curvature import (
    curvature_matvec,
    dense_from_matvec,
    dense_gnh,
    dense_hessian,
    gnh_product,
    hessian_product,
    sampled_matvec,
)
from pbrf.losses import LOSSES, get_loss
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem

RTOL = 1e-10
ATOL = 1e-12


def _vectors(d: int, k: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_gnh_product_equals_dense_jt_h_j(loss, weight_decay):
    problem, theta, x, t = tiny_problem(loss, weight_decay=weight_decay)
    v = _vectors(theta.numel())
    dense = dense_gnh(problem, theta, x, t)
    torch.testing.assert_close(
        gnh_product(problem, theta, x, t, v), v @ dense, rtol=RTOL, atol=ATOL
    )
    # symmetric PSD, as the GNH must be for a loss convex in the outputs
    torch.testing.assert_close(dense, dense.T, rtol=RTOL, atol=ATOL)
    assert torch.linalg.eigvalsh(dense).min() > -1e-12


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_hessian_product_equals_autograd_hessian(loss):
    problem, theta, x, t = tiny_problem(loss, weight_decay=0.01)
    v = _vectors(theta.numel())
    dense = dense_hessian(problem, theta, x, t)
    torch.testing.assert_close(
        hessian_product(problem, theta, x, t, v), v @ dense, rtol=RTOL, atol=ATOL
    )


def test_gnh_equals_hessian_for_linear_model_with_squared_error():
    # For a model linear in θ, J does not depend on θ and the GNH is the exact Hessian.
    _, _, x, t = tiny_problem("squared_error")
    lr = build_model("logistic_regression", input_shape=(5,), output_dim=3, seed=0).to(DTYPE)
    problem = Problem.from_module(lr, get_loss("squared_error"), 0.1)
    theta = flat_params(lr)
    torch.testing.assert_close(
        dense_gnh(problem, theta, x, t), dense_hessian(problem, theta, x, t), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("kind", ["gnh", "hessian"])
def test_chunked_products_equal_unchunked(kind):
    problem, theta, x, t = tiny_problem("cross_entropy", n=25, weight_decay=0.01)
    v = _vectors(theta.numel())
    full = curvature_matvec(problem, theta, x, t, kind)(v)
    chunked = curvature_matvec(problem, theta, x, t, kind, chunk_size=7)(v)
    torch.testing.assert_close(chunked, full, rtol=RTOL, atol=ATOL)


def test_dense_from_matvec_and_sampled_matvec_on_all_examples():
    problem, theta, x, t = tiny_problem("cross_entropy")
    d = theta.numel()
    dense = dense_from_matvec(curvature_matvec(problem, theta, x, t), d, DTYPE, block=7)
    torch.testing.assert_close(dense, dense_gnh(problem, theta, x, t), rtol=RTOL, atol=ATOL)
    # a "minibatch" holding every example is the full-data product (order does not matter)
    full_batch = sampled_matvec(problem, theta, x, t, x.shape[0], torch.Generator().manual_seed(0))
    v = _vectors(d)
    torch.testing.assert_close(full_batch(v), v @ dense, rtol=RTOL, atol=ATOL)


def test_sampled_matvec_is_an_unbiased_minibatch_estimate():
    problem, theta, x, t = tiny_problem("cross_entropy", n=12)
    v = _vectors(theta.numel(), k=1)
    gen = torch.Generator().manual_seed(0)
    matvec = sampled_matvec(problem, theta, x, t, 3, gen)
    mean = torch.stack([matvec(v) for _ in range(3000)]).mean(0)
    exact = gnh_product(problem, theta, x, t, v)
    # Monte-Carlo mean over 3000 draws: relative error a few percent at most.
    assert (mean - exact).norm() / exact.norm() < 0.05


def test_unknown_curvature_kind():
    problem, theta, x, t = tiny_problem()
    with pytest.raises(ValueError, match="unknown curvature 'fisher'"):
        curvature_matvec(problem, theta, x, t, "fisher")
