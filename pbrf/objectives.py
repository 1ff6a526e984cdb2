"""The response objectives of Table 1, as pure functions of one model's parameters θ ``(d,)``.

How a removal enters a minibatch (the definition every variant and test uses)
-------------------------------------------------------------------------------
Eq. 2 downweights example z by ε: ``Q(θ, ε) = J(θ) − ε ℓ_z(θ)``. On a minibatch ``B`` drawn
from the full data's batch order, each example gets the weight

    w_i = 1 − N ε  if i is a removed example,   w_i = 1 otherwise,

and the batch objective is ``(1/|B|) Σ_{i∈B} w_i ℓ_i(θ)``, normalized by the batch's nominal
size ``|B|`` in the full-data order (not by ``Σ w_i``). Over an epoch this sums exactly to
``N · Q(θ, ε)`` / (steps), and its expectation over batches is ``Q(θ, ε)``. Removal is
ε = 1/N, i.e. ``w_z = 0``: the run equals training on the data set with z physically deleted,
with the same batches minus z, each batch's summed loss still divided by its original size.
A group ``S`` is removed by setting ``w = 0`` on every member (``ε = 1/N`` per member).

The proximal Bregman objectives (Eq. 8, 11) instead keep every example in the Bregman term
(their sum runs over all N) and subtract ``ε ℓ_z(θ)`` explicitly at every step.

Responses as displacements
--------------------------
The objectives anchored at θˢ (Eq. 7, 8, 11) take the displacement ``δ = θ − θˢ`` as their
variable, not θ. With ε = 1/N the responses are tiny: a step of size η·ε·g added to θˢ in
float32 rounds away whenever it is below half a unit in the last place of θˢ, so training θ
directly loses the very signal being measured. Training δ keeps every update (δ starts at 0 and
has its own exponent), the proximal and linearized terms use δ exactly, and only the network's
forward pass sees the rounded sum θˢ + δ.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.func import jvp

from pbrf.problem import Problem


class Batch(NamedTuple):
    """One minibatch shared by all M models of a vectorized run."""

    x: Tensor
    t: Tensor
    size: int
    anchor_outputs: Tensor | None = None  # f(θˢ, x), needed by the PBRF only


def removal_weights(batch_index: Tensor, removed: Tensor, n: int, epsilon: float) -> Tensor:
    """Per-model example weights ``w`` of shape ``(M, b)`` (see module docstring).

    ``batch_index`` ``(b,)`` holds the data-set indices of the batch, ``removed`` ``(M, k)`` the
    indices each model removes.
    """
    hit = (batch_index[None, :, None] == removed[:, None, :]).any(dim=-1)
    return 1.0 - n * epsilon * hit.to(torch.get_default_dtype())


def downweighted_objective(
    problem: Problem, theta: Tensor, batch: Batch, weights: Tensor
) -> Tensor:
    """Minibatch estimate of ``Q(θ, ε) = J(θ) − ε ℓ_z(θ)`` (Eq. 2): cold- and warm-start."""
    losses = problem.example_losses(theta, batch.x, batch.t)
    return (weights.to(losses.dtype) * losses).sum() / batch.size


def proximal_objective(
    problem: Problem, delta: Tensor, batch: Batch, weights: Tensor, anchor: Tensor, damping: float
) -> Tensor:
    """``Q(θˢ + δ, ε) + (λ/2)‖δ‖²`` (Eq. 7), a function of the displacement δ."""
    return (
        downweighted_objective(problem, anchor + delta, batch, weights)
        + 0.5 * damping * (delta * delta).sum()
    )


def pbrf_objective(
    problem: Problem,
    delta: Tensor,
    batch: Batch,
    removed_x: Tensor,
    removed_t: Tensor,
    anchor: Tensor,
    epsilon: float,
    damping: float,
) -> Tensor:
    """The proximal Bregman objective (Eq. 8) at θ = θˢ + δ, minibatch estimate.

    ``(1/|B|) Σ_{i∈B} D_{ℓ_i}(θ) − ε Σ_{z∈S} ℓ_z(θ) + (λ/2)‖δ‖²`` where the Bregman
    divergence of ``ℓ_i = L_i + (w/2)‖θ‖²`` is ``D_L(f(θ, x_i), f(θˢ, x_i)) + (w/2)‖θ − θˢ‖²``
    (Eq. 9; the regularizer is quadratic, so its divergence is exact in θ).
    ``batch.anchor_outputs`` must hold ``f(θˢ, x)`` for the batch.
    """
    if batch.anchor_outputs is None:
        raise ValueError("pbrf_objective needs batch.anchor_outputs = f(θˢ, x)")
    theta = anchor + delta
    y = problem.f(theta, batch.x)
    bregman = problem.loss.bregman(y, batch.anchor_outputs, batch.t).sum() / batch.size
    removed = problem.example_losses(theta, removed_x, removed_t).sum()
    prox = 0.5 * (damping + problem.weight_decay) * (delta * delta).sum()
    return bregman - epsilon * removed + prox


def linearized_pbrf_objective(
    problem: Problem,
    delta: Tensor,
    batch: Batch,
    removed_x: Tensor,
    removed_t: Tensor,
    anchor: Tensor,
    epsilon: float,
    damping: float,
) -> Tensor:
    """The linearized PBRF (Eq. 11) at θ = θˢ + δ through ``torch.func.jvp`` (no Jacobian).

    With ``Δθ = δ`` and ``Δy_i = J_i Δθ`` (Eq. 13, one jvp over batch and removed points):

        (1/|B|) Σ_{i∈B} ½ Δy_iᵀ H_{yˢ_i} Δy_i + (w/2)‖Δθ‖² − ε Σ_{z∈S} ∇_θℓ_z(θˢ)ᵀ Δθ + (λ/2)‖Δθ‖²

    where ``∇_θℓ_z(θˢ)ᵀΔθ = ∇_y L(yˢ_z, t_z)ᵀ Δy_z + w θˢᵀΔθ``. Its minimizer is Eq. 49.
    """
    xs = torch.cat([batch.x, removed_x], dim=0)
    ys, dy = jvp(lambda th: problem.f(th, xs), (anchor,), (delta,))
    b = batch.x.shape[0]
    ys_b, dy_b, ys_z, dy_z = ys[:b], dy[:b], ys[b:], dy[b:]
    quad = problem.loss.quadratic_bregman(dy_b, ys_b, batch.t).sum() / batch.size
    k = removed_x.shape[0]
    grad_dot = (problem.loss.output_grad(ys_z, removed_t) * dy_z).sum()
    grad_dot = grad_dot + k * problem.weight_decay * (anchor * delta).sum()
    prox = 0.5 * (damping + problem.weight_decay) * (delta * delta).sum()
    return quad - epsilon * grad_dot + prox
