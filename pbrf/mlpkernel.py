"""Hand-written forward and backward passes of an MLP (:mod:`pbrf.models.mlp`) for M stacked
models: batched matrix products, no autograd graph.

For layer l with weights ``W_l (o, i)`` and bias ``b_l``: ``z_l = a_{l-1} W_lᵀ + b_l`` and
``a_l = σ(z_l)`` (no σ after the last layer). Given the output gradients ``g = ∂J/∂y``, the
parameter gradients are ``∂W_l = g_lᵀ a_{l-1}``, ``∂b_l = Σ_i g_l`` with ``g_{l-1} = (g_l W_l) ⊙
σ'(z_{l-1})``, batched over the M models with ``bmm``. Per-example removal weights (Eq. 2)
enter by scaling the rows of ``g``.

The Gauss-Newton product (Eq. 6) ``Σ_i J_iᵀ H_i J_i v`` for R vectors at one θ reuses one
forward pass: ``J v`` by the forward-mode recursion ``dz_l = a_{l-1} dW_lᵀ + db_l +
da_{l-1} W_lᵀ``, ``da_l = σ'(z_l) ⊙ dz_l``, then the output Hessian, then the backward
recursion above with the shared weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pbrf.losses import OutputLoss
from pbrf.models.mlp import MLP
from pbrf.problem import Problem

ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
# Whether the defaults use this module for MLPs: ``kernel="auto"`` (pbrf.kernels) and every GNH
# product (pbrf.curvature.gnh_chunk, so LiSSA). Off: in float32 the different summation order,
# exact to rounding per step, is amplified over a long SGD run (ReLU kinks), so the default
# study's outputs would move beyond their recorded tolerances. ``kernel="mlp"`` opts in per run.
AUTO = False
Layers = list[tuple[Tensor, Tensor]]  # [(W (..., o, i), b (..., o))]


@dataclass(frozen=True)
class MLPShape:
    """Layer sizes ``(in, h_1, ..., out)`` and the hidden activation of an MLP."""

    sizes: tuple[int, ...]
    activation: str

    def split(self, theta: Tensor) -> Layers:
        """``θ (..., d)`` → per-layer views ``[(W (..., o, i), b (..., o))]`` (the parameter
        order of ``named_parameters``: weight then bias, layer by layer)."""
        lead, out, off = theta.shape[:-1], [], 0
        for i, o in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            w = theta[..., off : off + o * i].unflatten(-1, (o, i))
            off += o * i
            out.append((w, theta[..., off : off + o]))
            off += o
        assert off == theta.shape[-1], (off, lead)
        return out

    def act(self, z: Tensor) -> Tensor:
        if self.activation == "relu":
            return torch.relu(z)
        return torch.tanh(z) if self.activation == "tanh" else torch.sigmoid(z)

    def dact(self, g: Tensor, a: Tensor) -> Tensor:
        """``g ⊙ σ'(z)`` from ``a = σ(z)``, reusing ``g``'s storage where it can (ReLU: ``g``
        where ``a > 0``, by the fused kernel of ReLU's own backward)."""
        if self.activation == "relu":
            return torch.ops.aten.threshold_backward(g, a, 0)
        return g.mul_(1 - a * a) if self.activation == "tanh" else g.mul_(a * (1 - a))


def mlp_shape(problem: Problem) -> MLPShape | None:
    """The :class:`MLPShape` of the network behind ``problem.f``, or ``None`` when it is not an
    :class:`~pbrf.models.mlp.MLP` with a supported activation (then other kernels apply). The
    module is the one :func:`pbrf.params.functional_model` closed ``f`` over."""
    cells = getattr(problem.f, "__closure__", None) or ()
    module = next((c.cell_contents for c in cells if isinstance(c.cell_contents, MLP)), None)
    if module is None:
        return None
    layers = list(module.net)
    acts = {type(m) for m in layers if not isinstance(m, nn.Linear)}
    if len(acts) > 1 or (acts and next(iter(acts)) not in ACTIVATIONS):
        return None
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if any(m.bias is None for m in linears):
        return None
    sizes = (linears[0].in_features, *(m.out_features for m in linears))
    return MLPShape(sizes, ACTIVATIONS[next(iter(acts))] if acts else "relu")


def forward(shape: MLPShape, layers: Layers, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Outputs ``(M, n, out)`` of M stacked models and the inputs of every layer.

    ``x`` is ``(n, in)`` shared by the models or ``(M, n, in)``; ``layers`` hold stacked weights
    ``(M, o, i)``."""
    m = layers[0][0].shape[0]
    a = x if x.dim() == 3 else x.expand(m, *x.shape)
    inputs = [a]
    for j, (w, b) in enumerate(layers):
        z = torch.baddbmm(b.unsqueeze(1), a, w.transpose(1, 2))
        if j == len(layers) - 1:
            return z, inputs
        a = shape.act(z)
        inputs.append(a)
    raise AssertionError("an MLP has at least one layer")


def backward(
    shape: MLPShape, layers: Layers, inputs: list[Tensor], g: Tensor, out: Tensor
) -> Tensor:
    """Write ``∂J/∂θ (M, d)`` into ``out`` from the output gradients ``g (M, n, out)``."""
    grads = shape.split(out)
    for j in range(len(layers) - 1, -1, -1):
        gw, gb = grads[j]
        torch.bmm(g.transpose(1, 2), inputs[j], out=gw)  # straight into the strided view
        torch.sum(g, dim=1, out=gb)
        if j:
            g = shape.dact(torch.bmm(g, layers[j][0]), inputs[j])
    return out


def flat_loss(
    loss: OutputLoss, y: Tensor, t: Tensor, grads: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Per-example losses ``(M, n)`` and (with ``grads``) output gradients ``(M, n, out)`` of
    ``y (M, n, out)`` against targets ``t (M, n, ...)``, one call on the ``M·n`` rows."""
    m, n = y.shape[:2]
    yf, tf = y.reshape(m * n, -1), t.reshape(m * n, *t.shape[2:])
    g = loss.output_grad(yf, tf).view(m, n, -1) if grads else None
    return loss(yf, tf).view(m, n), g


def jvp_single(
    shape: MLPShape, layers: Layers, acts: list[Tensor], v: list[tuple[Tensor, Tensor]]
) -> Tensor:
    """``J v`` ``(R, n, out)`` at one model (weights ``(o, i)``, layer inputs ``acts``) for R
    tangents ``v`` (per-layer ``(R, o, i)``, ``(R, o)``)."""
    da = None
    for j, ((w, _), (dw, db)) in enumerate(zip(layers, v, strict=True)):
        dz = torch.matmul(acts[j], dw.transpose(1, 2)).add_(db.unsqueeze(1))
        if da is not None:
            dz.add_(torch.matmul(da, w.t()))
        if j == len(layers) - 1:
            return dz
        da = shape.dact(dz, acts[j + 1])
    raise AssertionError("an MLP has at least one layer")


def single_forward(shape: MLPShape, layers: Layers, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Outputs ``(n, out)`` and layer inputs of one model."""
    a, acts = x, [x]
    for j, (w, b) in enumerate(layers):
        z = torch.addmm(b, a, w.t())
        if j == len(layers) - 1:
            return z, acts
        a = shape.act(z)
        acts.append(a)
    raise AssertionError("an MLP has at least one layer")


def vjp_single(
    shape: MLPShape, layers: Layers, acts: list[Tensor], g: Tensor, out: Tensor
) -> Tensor:
    """``Jᵀ g`` for R output cotangents ``g (R, n, out)`` at one model, written into
    ``out (R, d)``."""
    grads = shape.split(out)
    for j in range(len(layers) - 1, -1, -1):
        gw, gb = grads[j]
        gw.copy_(torch.matmul(g.transpose(1, 2), acts[j]))
        gb.copy_(g.sum(1))
        if j:
            g = shape.dact(torch.matmul(g, layers[j][0]), acts[j])
    return out


def gnh_chunk(
    shape: MLPShape,
    loss: OutputLoss,
    theta: Tensor,
    x: Tensor,
    t: Tensor,
    v: Tensor,
    scale: float = 1.0,
) -> Tensor:
    """``scale · Σ_i J_iᵀ H_i J_i V`` for ``V (R, d)`` over the examples ``x (n, ...)`` (a sum;
    ``scale`` multiplies the small output-space products, not the ``(R, d)`` result)."""
    layers = shape.split(theta)
    ys, acts = single_forward(shape, layers, x.reshape(x.shape[0], -1))
    dy = jvp_single(shape, layers, acts, shape.split(v))
    hdy = loss.output_hvp(ys, t, dy)
    if scale != 1.0:
        hdy = hdy.mul_(scale)
    return vjp_single(shape, layers, acts, hdy, torch.empty_like(v))


def quad_values(
    shape: MLPShape, loss: OutputLoss, theta: Tensor, x: Tensor, t: Tensor, v: Tensor
) -> Tensor:
    """``Σ_i ½ (J_i v)ᵀ H_i (J_i v)`` for each row of ``V (R, d)`` (Eq. 11's quadratic term)."""
    layers = shape.split(theta)
    ys, acts = single_forward(shape, layers, x.reshape(x.shape[0], -1))
    dy = jvp_single(shape, layers, acts, shape.split(v))
    return 0.5 * (dy * loss.output_hvp(ys, t, dy)).flatten(1).sum(1)
