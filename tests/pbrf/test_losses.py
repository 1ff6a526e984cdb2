"""Losses: gradients, output Hessians and Bregman divergences (Eq. 9) against autograd."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian

from pbrf.losses import LOSSES, get_loss

ATOL = 1e-12
DTYPE = torch.float64


def _sample(name: str, shape: tuple[int, ...] = (4, 3), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(*shape, generator=g, dtype=DTYPE)
    ys = torch.randn(*shape, generator=g, dtype=DTYPE)
    if name == "cross_entropy":
        t = torch.randint(0, shape[-1], shape[:-1], generator=g)
    elif name == "squared_error":
        t = torch.randn(*shape, generator=g, dtype=DTYPE)
    else:
        t = torch.rand(*shape, generator=g, dtype=DTYPE)
    return y, ys, t


SHAPES = [(4, 3), (2, 5, 3)]  # (B, C) and a sequence (B, T, C)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", SHAPES)
def test_grad_and_hvp_match_autograd(name, shape):
    loss = get_loss(name)
    y, _, t = _sample(name, shape)
    v = torch.randn_like(y)
    for i in range(y.shape[0]):

        def li(yi, i=i):
            return loss(yi[None], t[i : i + 1])[0]

        assert torch.allclose(loss.output_grad(y, t)[i], grad(li)(y[i]), atol=ATOL)
        h = hessian(li)(y[i]).reshape(y[i].numel(), y[i].numel())
        hv = (h @ v[i].reshape(-1)).reshape(y[i].shape)
        assert torch.allclose(loss.output_hvp(y, t, v)[i], hv, atol=ATOL)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", SHAPES)
def test_bregman_is_eq9_nonnegative_and_zero_at_anchor(name, shape):
    loss = get_loss(name)
    y, ys, t = _sample(name, shape)
    eq9 = (
        loss(y, t)
        - loss(ys, t)
        - (loss.output_grad(ys, t) * (y - ys)).reshape(y.shape[0], -1).sum(1)
    )
    d = loss.bregman(y, ys, t)
    assert torch.allclose(d, eq9, atol=ATOL)
    assert (d >= 0).all()
    # D(·, yˢ) is 0 with zero gradient at y = yˢ.
    assert torch.allclose(loss.bregman(ys, ys, t), torch.zeros(y.shape[0], dtype=DTYPE), atol=ATOL)
    g = grad(lambda yy: loss.bregman(yy, ys, t).sum())(ys)
    assert g.abs().max() < ATOL


def test_cross_entropy_bregman_is_kl_of_softmaxes():
    loss = get_loss("cross_entropy")
    y, ys, t = _sample("cross_entropy", (6, 4))
    ps, logp = torch.softmax(ys, -1), torch.log_softmax(y, -1)
    kl = (ps * (torch.log(ps) - logp)).sum(-1)
    assert torch.allclose(loss.bregman(y, ys, t), kl, atol=ATOL)
    # ... and does not depend on the target.
    assert torch.allclose(loss.bregman(y, ys, (t + 1) % 4), kl, atol=ATOL)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_quadratic_bregman_is_half_dy_h_dy(name):
    loss = get_loss(name)
    y, ys, t = _sample(name, (5, 3))
    dy = y - ys
    expected = 0.5 * (dy * loss.output_hvp(ys, t, dy)).sum(-1)
    assert torch.allclose(loss.quadratic_bregman(dy, ys, t), expected, atol=ATOL)
    # Second-order agreement: D_L(yˢ + s·Δy, yˢ) / s² → ½ ΔyᵀHΔy.
    s = 1e-4
    assert torch.allclose(loss.bregman(ys + s * dy, ys, t) / s**2, expected, rtol=1e-3)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")
