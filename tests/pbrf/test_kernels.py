"""The fast training kernels (pbrf.kernels) against the reference ``vmap(grad_and_value)`` of the
Table-1 objectives: same optima, losses and convergence checkpoints to rounding.

Tolerances. In float64 the kernels compute the same objective with the operations regrouped
(the regularizer summed once instead of per example, one forward pass over batch and removed
examples, the linearized PBRF's gradient written as a Gauss-Newton product): each step differs
by a few units of 1e-16 and a dozen SGD steps on a smooth tiny MLP amplify that by O(1), so
``rtol=1e-9, atol=1e-12`` is loose by orders of magnitude yet far below the responses
(``max |Δ|`` ≈ 1e-2..1e-1, and removals differ from each other by > 1e-6). The float32 test
uses ``1e-4 · max |Δ|``: float32's unit roundoff is 6e-8 and the regrouping changes each
gradient by a relative O(1e-7) over a few dozen steps.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_problems import tiny_data, tiny_problem

from pbrf.curvature import autodiff_gnh_chunk
from pbrf.kernels import (
    LOOP_MIN_WORK,
    LinearizedStepper,
    Stepper,
    choose_kernel,
    fast_objective,
    make_stepper,
)
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.objectives import Batch
from pbrf.optim import FirstOrderOptimizer
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import BaseRun, Schedule, retrain, train_base, variant_objective
from pbrf.solvers.lissa import lissa
from pbrf.study.config import TrainConfig

RTOL, ATOL = 1e-9, 1e-12
N = 30
VARIANTS = (
    "cold",
    "warm",
    "proximal",
    "pbrf",
    "linearized_pbrf",
    "pbrf_paper",
    "linearized_pbrf_paper",
    "two_stage",
)
REMOVED = torch.tensor([[0], [7], [29]])


def _train(opt: str, epochs: int = 3) -> TrainConfig:
    return TrainConfig(optimizer={"name": opt, "lr": 0.05}, epochs=epochs, batch_size=8)


@pytest.fixture(scope="module", params=[0.0, 0.01], ids=["wd0", "wd0.01"])
def setup(request):
    problem, theta, x, t = tiny_problem("cross_entropy", n=N, weight_decay=request.param)
    base = train_base(problem, theta, x, t, _train("sgd"), kernel="reference")
    return problem, theta, x, t, base


@pytest.mark.parametrize("kernel", ["vmap", "loop"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_base_training_equals_reference(setup, kernel, optimizer):
    problem, theta, x, t, _ = setup
    train = _train(optimizer)
    ref = train_base(problem, theta, x, t, train, kernel="reference")
    fast = train_base(problem, theta, x, t, train, kernel=kernel)
    torch.testing.assert_close(fast.theta_s, ref.theta_s, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(fast.epoch_loss, ref.epoch_loss, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kernel", ["vmap", "loop"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_retraining_equals_reference(setup, variant, optimizer, kernel):
    problem, _, x, t, base = setup
    kw = dict(train=_train(optimizer), damping=0.01, schedule=Schedule(3, 1.0))
    ref = retrain(variant, problem, base, x, t, REMOVED, kernel="reference", **kw)
    fast = retrain(variant, problem, base, x, t, REMOVED, kernel=kernel, **kw)
    assert ref.delta.abs().max() > 1e-3  # a response worth comparing
    assert (ref.delta[0] - ref.delta[1]).abs().max() > 1e-6
    torch.testing.assert_close(fast.delta, ref.delta, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(fast.epoch_loss, ref.epoch_loss, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(fast.checkpoints, ref.checkpoints, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("variant", VARIANTS[:-1])
def test_one_step_gradients_and_values_equal_reference(setup, variant):
    """A single step at random, different displacements: every stepper's gradient and value
    equal autograd's on the reference objective."""
    problem, _, x, t, base = setup
    anchor, eps, lam = base.theta_s, 1.0 / N, 0.03
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
    for kernel in ("vmap", "loop"):
        st = make_stepper(variant, problem, anchor, eps, lam, kernel, ref_obj)
        got_g, got_v = st.grad_and_value(delta.clone(), batch, w, rx, rt)
        torch.testing.assert_close(got_g, want_g, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(got_v, want_v, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(st.value(delta, batch, w, rx, rt), want_v, rtol=RTOL, atol=ATOL)
        # all models at one point: the shared forward pass gives every model's value
        same = delta[:1].expand(3, -1)
        torch.testing.assert_close(
            st.shared_value(delta[0], batch, w, rx, rt),
            st.value(same.contiguous(), batch, w, rx, rt),
            rtol=RTOL,
            atol=ATOL,
        )


def test_float32_loop_equals_reference():
    """Float32 at a wider MLP (the dtype of the study's rows), warm and linearized PBRF."""
    model = build_model("mlp", input_shape=(20,), output_dim=3, seed=0, width=32, depth=2)
    problem = Problem.from_module(model, get_loss("cross_entropy"))
    theta = flat_params(model)
    x, t = tiny_data("cross_entropy", n=64, d_in=20)
    x = x.float()
    base = BaseRun(theta, theta, torch.empty(0, 64, dtype=torch.long), torch.empty(0))
    kw = dict(train=_train("momentum", 2), damping=0.01, schedule=Schedule(2, 1.0))
    for variant in ("warm", "linearized_pbrf"):
        ref = retrain(variant, problem, base, x, t, REMOVED, kernel="reference", **kw)
        fast = retrain(variant, problem, base, x, t, REMOVED, kernel="loop", **kw)
        assert fast.delta.dtype == torch.float32 and fast.delta.device == theta.device
        scale = float(ref.delta.abs().max())
        torch.testing.assert_close(fast.delta, ref.delta, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_in_place_optimizer_step_is_bitwise_the_reference_step(kind):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 50, generator=g)
    ref, fast = FirstOrderOptimizer(kind), FirstOrderOptimizer(kind)
    a, b = theta.clone(), theta.clone()
    for _ in range(4):
        grad = torch.randn(4, 50, generator=g)
        a = ref.step(a, grad.clone(), 0.03)
        fast.step_(b, grad.clone(), 0.03)
        assert torch.equal(a, b)


def test_choose_kernel():
    assert choose_kernel("auto", LOOP_MIN_WORK // 128, 128, 1000) == "loop"
    assert choose_kernel("auto", LOOP_MIN_WORK // 128 - 1, 128, 1000) == "vmap"
    assert choose_kernel("auto", LOOP_MIN_WORK // 1000, None, 1000) == "loop"
    assert choose_kernel("auto", 10, 128, 1000, models=1) == "loop"  # base training
    assert choose_kernel("reference", 10**9, 128, 1000) == "reference"
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    conv_problem = Problem.from_module(conv, get_loss("cross_entropy"))
    assert choose_kernel("auto", 10, 128, 1000, 20, conv_problem, "warm") == "loop"  # measured
    mlp = Problem.from_module(torch.nn.Linear(3, 2), get_loss("cross_entropy"))
    assert choose_kernel("auto", 10, 128, 1000, 20, mlp, "warm") == "vmap"
    with pytest.raises(ValueError, match="unknown kernel 'fast'"):
        choose_kernel("fast", 10, 1, 1)
    with pytest.raises(ValueError, match="resolve kernel='auto'"):
        make_stepper("warm", *tiny_problem()[:2], 0.1, 0.0, "auto", lambda *a: a[0].sum())
    with pytest.raises(ValueError, match="no fast objective"):
        fast_objective("linearized_pbrf", *tiny_problem()[:2], 0.1, 0.0)


def test_stepper_types():
    problem, theta = tiny_problem()[:2]
    ref = variant_objective("warm", problem, theta, 0.1, 0.0)[0]
    assert isinstance(make_stepper("linearized_pbrf", problem, theta, 0.1, 0, "loop", ref),
                      LinearizedStepper)  # fmt: skip
    st = make_stepper("linearized_pbrf", problem, theta, 0.1, 0, "reference", ref)
    assert isinstance(st, Stepper) and st.kernel == "reference"


def test_per_tensor_gnh_products_equal_flat_ones():
    """The GNH product through per-tensor parameters (Problem.f_params) = the flat-θ path."""
    problem, theta, x, t = tiny_problem("cross_entropy", n=16)
    flat = dataclasses.replace(problem, f_params=None)
    v = torch.randn(4, theta.numel(), generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    torch.testing.assert_close(
        autodiff_gnh_chunk(problem, theta, x, t, v),
        autodiff_gnh_chunk(flat, theta, x, t, v),
        rtol=RTOL,
        atol=ATOL,
    )


def test_lissa_in_place_recursion_is_the_plain_recursion():
    """LiSSA's in-place update is Eq. 51's recursion, operation for operation: bitwise equal to
    a plain loop ``h ← v + (1 − λ/σ) h − A h / σ`` on a dense SPD matrix."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = a @ a.T / 12
    v = torch.randn(3, 12, generator=g, dtype=torch.float64)
    lam, sigma, depth = 0.1, 4.0, 50
    h = v.clone()
    for _ in range(depth):
        h = v + (1 - lam / sigma) * h - (h @ a) / sigma
    got = lissa(lambda w: w @ a, v, depth=depth, scale=sigma, damping=lam).x
    assert torch.equal(got, h / sigma)


@pytest.mark.parametrize("variant", ["warm", "proximal", "pbrf"])
def test_conv_loop_equals_reference(variant):
    """A small convolutional network with max pooling (LeNet's layers), where ``auto`` loops:
    momentum and weight decay, float64, the loop's optima equal the vmapped reference's."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(27, 3),
    ).double()  # fmt: skip
    problem = Problem.from_module(net, get_loss("cross_entropy"), weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (N,), generator=g)
    train = TrainConfig(
        optimizer={"name": "momentum", "lr": 0.05}, epochs=3, batch_size=8, weight_decay=5e-4
    )
    base = train_base(problem, flat_params(net), x, t, train, kernel="reference")
    assert choose_kernel("auto", base.theta_s.numel(), 8, N, 3, problem, variant) == "loop"
    kw = dict(train=train, damping=0.01, schedule=Schedule(3, 1.0))
    ref = retrain(variant, problem, base, x, t, REMOVED, kernel="reference", **kw)
    fast = retrain(variant, problem, base, x, t, REMOVED, kernel="auto", **kw)
    assert ref.delta.abs().max() > 1e-3
    torch.testing.assert_close(fast.delta, ref.delta, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(fast.checkpoints, ref.checkpoints, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("variant", ["cold", "pbrf", "two_stage"])
def test_skipping_the_convergence_check_leaves_the_optima_unchanged(setup, variant):
    problem, _, x, t, base = setup
    kw = dict(train=_train("momentum"), damping=0.01, schedule=Schedule(3, 1.0), kernel="loop")
    with_checks = retrain(variant, problem, base, x, t, REMOVED, **kw)
    without = retrain(variant, problem, base, x, t, REMOVED, checks=False, **kw)
    assert with_checks.checkpoints is not None and without.checkpoints is None
    assert torch.equal(with_checks.delta, without.delta)
    assert torch.equal(with_checks.epoch_loss, without.epoch_loss)
