"""GNH and Hessian products against dense references (float64, tight tolerances)."""

from __future__ import annotations

import pytest
import torch
from tiny_problems import DTYPE, tiny_problem

from pbrf.curvature import (
    LinearizedGNH,
    curvature_matvec,
    dense_from_matvec,
    dense_gnh,
    dense_hessian,
    gnh_product,
    hessian_product,
    output_hessian_factor,
    sampled_matvec,
)
from pbrf.losses import LOSSES, get_loss
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem

# float64 products of O(1) entries through two different autodiff paths: they agree to a few
# ulps times the number of summed terms (≤ 10³), far below 1e-10 relative.
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
    draws = torch.stack([matvec(v) for _ in range(800)])
    exact = gnh_product(problem, theta, x, t, v)
    # One draw deviates by ~1.4‖Gv‖ here, so the mean of 800 has a standard error of ~0.05‖Gv‖;
    # 0.15 is 3 standard errors, while a biased estimate (e.g. a sum over the batch instead of a
    # mean, 4× too large) would be off by ≥ 1.
    spread = float((draws - exact).norm(dim=-1).mean() / exact.norm())
    assert 0.5 < spread < 3.0  # a genuinely random minibatch, not the full data
    assert (draws.mean(0) - exact).norm() / exact.norm() < 0.15


def test_unknown_curvature_kind():
    problem, theta, x, t = tiny_problem()
    with pytest.raises(ValueError, match="unknown curvature 'fisher'"):
        curvature_matvec(problem, theta, x, t, "fisher")


# --- the linearized GNH and its Gauss-Newton factor ------------------------------------------


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize(
    ("chunk_size", "cache"), [(None, None), (5, None), (5, True), (None, False)]
)
def test_linearized_gnh_product_equals_dense_gnh(loss, chunk_size, cache):
    problem, theta, x, t = tiny_problem(loss, n=13, weight_decay=0.05)
    v = _vectors(theta.numel())
    op = LinearizedGNH(problem, theta, x, t, chunk_size, cache=cache)
    assert op.cache is (chunk_size is None if cache is None else cache)
    dense = dense_gnh(problem, theta, x, t)
    torch.testing.assert_close(op.matvec(v), v @ dense, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(op(v), v @ dense, rtol=RTOL, atol=ATOL)
    u = torch.randn(2, 13 * op.rank, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    a = op.factor_rows(0, 13)  # checked against jacrev below
    torch.testing.assert_close(op.factor_t(u), u @ a, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("loss", "rank"), [("cross_entropy", 2), ("squared_error", 3), ("binary_cross_entropy", 3)]
)
def test_output_hessian_factor_squares_to_the_autograd_output_hessian(loss, rank):
    problem, theta, x, t = tiny_problem(loss, n=6)
    ys = problem.f(theta, x)
    b, info = output_hessian_factor(problem.loss, ys, t)
    # independent reference: torch.func.hessian of each example's loss in its outputs
    h = torch.stack(
        [
            torch.func.hessian(lambda y, i=i: problem.loss(y[None], t[i : i + 1]).sum())(ys[i])
            for i in range(6)
        ]
    )
    torch.testing.assert_close(b.transpose(-1, -2) @ b, h, rtol=RTOL, atol=ATOL)
    # softmax cross-entropy's H = diag(p) − ppᵀ is singular (null vector 1): C − 1 rows suffice
    assert b.shape == (6, rank, 3) and info["rank"] == rank
    assert info["min_eigenvalue"] > -1e-15


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_factor_rows_kernel_and_gram_against_jacrev(loss):
    problem, theta, x, t = tiny_problem(loss, n=11, weight_decay=0.05)
    n, d = x.shape[0], theta.numel()
    op = LinearizedGNH(problem, theta, x, t, chunk_size=4)
    b = op.output_factor
    # A = stacked B_i J_i, with J from jacrev (independent of the vjp-based rows)
    jac = torch.func.jacrev(lambda th: problem.f(th, x))(theta).reshape(n, -1, d)
    a = torch.einsum("irm,imd->ird", b, jac).reshape(-1, d)
    torch.testing.assert_close(op.factor_rows(0, n), a, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(
        op.factor_rows(3, 7), a[3 * op.rank : 7 * op.rank], rtol=RTOL, atol=ATOL
    )
    # the kernel's lower triangle is AAᵀ's, built in blocks smaller than the data
    torch.testing.assert_close(op.kernel().tril(), (a @ a.T).tril(), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(op.gram(), dense_gnh(problem, theta, x, t), rtol=RTOL, atol=ATOL)
    v = _vectors(d, k=3)
    u = torch.randn(3, a.shape[0], generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    torch.testing.assert_close(op.factor(v), v @ a.T, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(op.factor_t(u), u @ a, rtol=RTOL, atol=ATOL)


def test_kernel_blocks_cover_the_lower_triangle(monkeypatch):
    # tiny blocks (2 examples of rows, 1 column example) exercise every block boundary
    import pbrf.curvature as curvature

    monkeypatch.setattr(curvature, "_KERNEL_ROWS", 2)
    monkeypatch.setattr(curvature, "_KERNEL_PAIRS", 1)
    problem, theta, x, t = tiny_problem("cross_entropy", n=7)
    op = LinearizedGNH(problem, theta, x, t)
    a = op.factor_rows(0, 7)
    seen = []
    kernel = op.kernel(progress=lambda i, total: seen.append((i, total)))
    torch.testing.assert_close(kernel.tril(), (a @ a.T).tril(), rtol=RTOL, atol=ATOL)
    assert seen == [(i, 7) for i in range(1, 8)]
    # above the diagonal blocks nothing is computed: each entry is AAᵀ's or still 0
    filled = kernel != 0
    torch.testing.assert_close(kernel[filled], (a @ a.T)[filled], rtol=RTOL, atol=ATOL)
