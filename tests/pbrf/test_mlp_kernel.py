"""The MLP kernel (pbrf.mlpkernel, ``kernel="mlp"``) against the reference
``vmap(grad_and_value)`` of the Table-1 objectives and against dense float64 Jacobians.

Tolerances: float64 throughout. The kernel computes the same sums as autograd with the
operations regrouped (hand-written backward, the regularizer once per model), so one step differs
by a few units of 1e-16; a dozen SGD steps on a smooth tiny MLP amplify that by O(1), so
``rtol=1e-9, atol=1e-12`` is loose by orders of magnitude yet far below the responses
(``max |Δ|`` ≈ 1e-2..1e-1, removals differing from each other by > 1e-6).
"""

from __future__ import annotations

import pytest
import torch
from tiny_problems import tiny_data

from pbrf import mlpkernel
from pbrf.curvature import autodiff_gnh_chunk, gnh_chunk
from pbrf.kernels import (
    LOOP_MIN_WORK,
    LinearizedStepper,
    MLPStepper,
    choose_kernel,
    make_stepper,
)
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.objectives import Batch
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import Schedule, retrain, train_base, variant_objective
from pbrf.solvers.lissa import LissaDivergenceError, lissa
from pbrf.study.config import TrainConfig

RTOL, ATOL = 1e-9, 1e-12
N = 30
VARIANTS = ("cold", "warm", "proximal", "pbrf", "linearized_pbrf", "pbrf_paper", "two_stage")
REMOVED = torch.tensor([[0, 5], [7, 8], [29, 1]])


def _problem(loss: str, wd: float = 0.0, activation: str = "tanh", depth: int = 2):
    model = build_model(
        "mlp", input_shape=(5,), output_dim=3, seed=0, width=6, depth=depth, activation=activation
    ).to(torch.float64)
    problem = Problem.from_module(model, get_loss(loss), wd)
    x, t = tiny_data(loss, N, 5, 3, 0)
    return problem, flat_params(model), x, t


def _train(opt: str, epochs: int = 3) -> TrainConfig:
    return TrainConfig(optimizer={"name": opt, "lr": 0.05}, epochs=epochs, batch_size=8)


CASES = [("cross_entropy", 0.0), ("cross_entropy", 0.01), ("squared_error", 0.0),
         ("squared_error", 0.01)]  # fmt: skip


@pytest.fixture(scope="module", params=CASES, ids=[f"{a}-wd{b}" for a, b in CASES])
def setup(request):
    loss, wd = request.param
    problem, theta, x, t = _problem(loss, wd)
    base = train_base(problem, theta, x, t, _train("sgd"), kernel="reference")
    return problem, theta, x, t, base


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_base_training_equals_reference(setup, optimizer):
    problem, theta, x, t, _ = setup
    ref = train_base(problem, theta, x, t, _train(optimizer), kernel="reference")
    fast = train_base(problem, theta, x, t, _train(optimizer), kernel="mlp")
    torch.testing.assert_close(fast.theta_s, ref.theta_s, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(fast.epoch_loss, ref.epoch_loss, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_retraining_equals_reference(setup, variant, optimizer):
    problem, _, x, t, base = setup
    kw = dict(train=_train(optimizer), damping=0.01, schedule=Schedule(3, 1.0))
    ref = retrain(variant, problem, base, x, t, REMOVED, kernel="reference", **kw)
    fast = retrain(variant, problem, base, x, t, REMOVED, kernel="mlp", **kw)
    assert ref.delta.abs().max() > 1e-3  # a response worth comparing
    assert (ref.delta[0] - ref.delta[1]).abs().max() > 1e-6
    torch.testing.assert_close(fast.delta, ref.delta, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(fast.epoch_loss, ref.epoch_loss, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(fast.checkpoints, ref.checkpoints, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("variant", VARIANTS[:-1])
def test_one_step_gradients_and_values_equal_reference(setup, variant, activation):
    """One step at random, different displacements and weights: gradient and value equal
    autograd's on the reference objective, for each activation."""
    loss = setup[0].loss.name
    problem, theta, x, t = _problem(loss, setup[0].weight_decay, activation)
    anchor, eps, lam = theta, 1.0 / N, 0.03
    ref_obj, mask, prepare = variant_objective(variant, problem, anchor, eps, lam)
    g = torch.Generator().manual_seed(3)
    delta = 0.1 * torch.randn(3, anchor.numel(), generator=g, dtype=anchor.dtype)
    idx = torch.arange(8, 16)
    batch = Batch(x[idx], t[idx], 8)
    batch = prepare(batch) if prepare is not None else batch
    w = torch.rand(3, 8, generator=g, dtype=anchor.dtype) if mask else torch.ones(3, 8)
    rx, rt = x[REMOVED], t[REMOVED]
    want_g, want_v = make_stepper(
        variant, problem, anchor, eps, lam, "reference", ref_obj
    ).grad_and_value(delta, batch, w, rx, rt)
    st = make_stepper(variant, problem, anchor, eps, lam, "mlp", ref_obj)
    assert isinstance(st, LinearizedStepper if variant == "linearized_pbrf" else MLPStepper)
    got_g, got_v = st.grad_and_value(delta.clone(), batch, w, rx, rt)
    torch.testing.assert_close(got_g, want_g, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(got_v, want_v, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(st.value(delta, batch, w, rx, rt), want_v, rtol=RTOL, atol=ATOL)
    same = delta[:1].expand(3, -1).contiguous()
    torch.testing.assert_close(
        st.shared_value(delta[0], batch, w, rx, rt),
        make_stepper(variant, problem, anchor, eps, lam, "reference", ref_obj).value(
            same, batch, w, rx, rt
        ),
        rtol=RTOL,
        atol=ATOL,
    )


def _dense_gnh_sum(problem: Problem, theta, x, t):
    """``Σ_i J_iᵀ H_i J_i`` from dense per-example Jacobians and output Hessians."""
    total = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype)
    for i in range(x.shape[0]):
        xi, ti = x[i : i + 1], t[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda th, xi=xi: problem.f(th, xi)[0], theta)
        y = problem.f(theta, xi)
        h = torch.autograd.functional.hessian(
            lambda yy, ti=ti: problem.loss(yy[None], ti).sum(), y[0]
        )
        total += jac.T @ h @ jac
    return total


@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error", "binary_cross_entropy"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_gnh_products_equal_autodiff_and_dense(loss, activation, monkeypatch):
    problem, theta, x, t = _problem(loss, 0.0, activation)
    shape = mlpkernel.mlp_shape(problem)
    assert shape is not None and shape.sizes == (5, 6, 6, 3)
    v = torch.randn(4, theta.numel(), generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    got = mlpkernel.gnh_chunk(shape, problem.loss, theta, x[:10], t[:10], v)
    want = autodiff_gnh_chunk(problem, theta, x[:10], t[:10], v)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    assert torch.equal(gnh_chunk(problem, theta, x[:10], t[:10], v), want)  # default: autodiff
    monkeypatch.setattr("pbrf.mlpkernel.AUTO", True)
    assert torch.equal(gnh_chunk(problem, theta, x[:10], t[:10], v), got)
    dense = _dense_gnh_sum(problem, theta, x[:10], t[:10])
    torch.testing.assert_close(got, v @ dense, rtol=RTOL, atol=ATOL)
    quad = mlpkernel.quad_values(shape, problem.loss, theta, x[:10], t[:10], v)
    torch.testing.assert_close(quad, 0.5 * ((v @ dense) * v).sum(1), rtol=RTOL, atol=ATOL)
    # a scale applied to the output-space products scales the result
    scaled = (v @ dense) / 10
    for product in (
        mlpkernel.gnh_chunk(shape, problem.loss, theta, x[:10], t[:10], v, 0.1),
        autodiff_gnh_chunk(problem, theta, x[:10], t[:10], v, 0.1),
    ):
        torch.testing.assert_close(product, scaled, rtol=RTOL, atol=ATOL)


def test_lissa_through_the_mlp_kernel_equals_autodiff():
    """LiSSA's sampled GNH products and its power iteration through ``kernel="mlp"`` give the
    autodiff solve to float64 rounding; the MLP kernel is refused for other networks."""
    from pbrf.curvature import gnh_kernel, gnh_product
    from pbrf.influence import inverse_curvature_product, removal_gradients
    from pbrf.solvers import LissaSettings

    problem, theta, x, t = _problem("cross_entropy", 0.01)
    g = removal_gradients(problem, theta, x[REMOVED], t[REMOVED])
    v = torch.randn(3, theta.numel(), generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    torch.testing.assert_close(
        gnh_product(problem, theta, x, t, v, 7, kernel="mlp"),
        gnh_product(problem, theta, x, t, v, 7),
        rtol=RTOL,
        atol=ATOL,
    )
    settings = LissaSettings(depth=40, repeats=2, batch_size=10, scale="auto")
    kw = {"damping": 0.01, "solver": settings}
    got = inverse_curvature_product(problem, theta, x, t, g, kernel="mlp", **kw)
    want = inverse_curvature_product(problem, theta, x, t, g, **kw)
    assert got.info["scale"] == pytest.approx(want.info["scale"], rel=1e-10)
    torch.testing.assert_close(got.x, want.x, rtol=1e-9, atol=1e-12)
    assert not torch.equal(got.x, want.x)  # two different computations, not one path twice
    cnn = Problem.from_module(
        build_model("lenet", input_shape=(1, 28, 28), output_dim=3, seed=0),
        get_loss("cross_entropy"),
    )
    assert gnh_kernel(problem, "vmap") is None and gnh_kernel(problem, "auto") is None
    with pytest.raises(ValueError, match="kernel 'mlp' needs an MLP"):
        gnh_kernel(cnn, "mlp")


def test_kernel_choice(monkeypatch):
    problem = _problem("cross_entropy")[0]
    assert choose_kernel("auto", 10, 8, 30, 20, problem) == "vmap"  # mlp is opt-in by default
    assert choose_kernel("mlp", 10, 8, 30, 20, problem) == "mlp"
    monkeypatch.setattr("pbrf.mlpkernel.AUTO", True)
    assert choose_kernel("auto", 10, 8, 30, 20, problem) == "mlp"
    big = LOOP_MIN_WORK // 8
    assert choose_kernel("auto", big, 8, 30, 20, problem, "warm") == "loop"  # measured faster
    assert choose_kernel("auto", big, 8, 30, 20, problem, "pbrf") == "mlp"
    assert choose_kernel("auto", big, 8, 30, 1, problem, "cold") == "mlp"  # base training
    assert choose_kernel("auto", big - 1, 8, 30, 20, problem, "warm") == "mlp"
    assert choose_kernel("auto", 10, 8, 30, 1, problem) == "mlp"
    assert choose_kernel("auto", 10, 8, 30, 20) == "vmap"  # no problem given: by size
    gelu = _problem("cross_entropy", activation="gelu")[0]
    assert mlpkernel.mlp_shape(gelu) is None
    assert choose_kernel("auto", 10, 8, 30, 20, gelu) == "vmap"
    cnn = build_model("lenet", input_shape=(1, 28, 28), output_dim=3, seed=0)
    assert mlpkernel.mlp_shape(Problem.from_module(cnn, get_loss("cross_entropy"))) is None
    with pytest.raises(ValueError, match="kernel 'mlp' needs an MLP"):
        choose_kernel("mlp", 10, 8, 30, 20, gelu)


@pytest.mark.parametrize("every", [1, 3, 32, 1000])
def test_lissa_block_divergence_check_equals_per_step_check(every):
    """Checking the divergence bound on blocks of steps gives bitwise the per-step result, and on
    divergence the same first step, ratio, bound and rows."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = a @ a.T / 12
    v = torch.randn(3, 12, generator=g, dtype=torch.float64)
    ok = lissa(lambda w: w @ a, v, depth=50, scale=8.0, damping=0.1, check_every=1).x
    got = lissa(lambda w: w @ a, v, depth=50, scale=8.0, damping=0.1, check_every=every).x
    assert torch.equal(got, ok)
    errors = []
    for k in (1, every):
        with pytest.raises(LissaDivergenceError) as info:
            lissa(lambda w: w @ a, v, depth=300, scale=0.5, damping=0.1, check_every=k)
        e = info.value
        errors.append((e.step, e.repeat, e.ratio, e.bound, e.rhs))
    assert errors[0] == errors[1] and errors[0][0] > 1
