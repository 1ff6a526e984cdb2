"""The Table-1 objectives: PBRF stationarity (Eq. 34), the linearized PBRF and its optimum (B.4)."""

from __future__ import annotations

import pytest
import torch
from tiny_problems import DTYPE, tiny_problem
from torch.func import grad, hessian

from pbrf.curvature import dense_gnh
from pbrf.gradients import removal_gradients
from pbrf.influence import influence_parameters
from pbrf.losses import LOSSES
from pbrf.objectives import (
    Batch,
    downweighted_objective,
    linearized_pbrf_objective,
    pbrf_objective,
    removal_weights,
)
from pbrf.responses import BaseRun, Schedule, retrain
from pbrf.solvers import exact_solve
from pbrf.study.config import TrainConfig

ATOL = 1e-11
DAMPING = 0.01
WD = 0.02


def _full_batch(problem, theta_s, x, t):
    return Batch(x, t, x.shape[0], problem.f(theta_s, x))


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_pbrf_gradient_vanishes_at_theta_s_for_zero_epsilon(loss):
    """Eq. 34 at ε = 0: θˢ is a stationary point of the proximal Bregman objective."""
    problem, theta_s, x, t = tiny_problem(loss, weight_decay=WD)
    batch = _full_batch(problem, theta_s, x, t)
    rx, rt = x[:2], t[:2]
    zero = torch.zeros_like(theta_s)  # the objectives take the displacement δ = θ − θˢ
    g = grad(lambda d: pbrf_objective(problem, d, batch, rx, rt, theta_s, 0.0, DAMPING))(zero)
    assert g.abs().max() < ATOL
    # with ε > 0 the gradient at θˢ is exactly −ε Σ ∇ℓ_z(θˢ): the push that removes z
    eps = 1.0 / x.shape[0]
    g = grad(lambda d: pbrf_objective(problem, d, batch, rx, rt, theta_s, eps, DAMPING))(zero)
    gz = removal_gradients(problem, theta_s, rx[None], rt[None])[0]
    torch.testing.assert_close(g, -eps * gz, rtol=1e-10, atol=ATOL)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_pbrf_hessian_at_theta_s_is_damped_gnh(loss):
    """At θˢ the Bregman term's output gradient vanishes, so ∇²(PBRF) = G + λI exactly."""
    problem, theta_s, x, t = tiny_problem(loss, weight_decay=WD, n=10, width=4)
    batch = _full_batch(problem, theta_s, x, t)
    h = hessian(lambda d: pbrf_objective(problem, d, batch, x[:0], t[:0], theta_s, 0.0, DAMPING))(
        torch.zeros_like(theta_s)
    )
    expected = dense_gnh(problem, theta_s, x, t) + DAMPING * torch.eye(theta_s.numel(), dtype=DTYPE)
    torch.testing.assert_close(h, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_linearized_pbrf_is_the_damped_gnh_quadratic(loss):
    """Eq. 11 through jvp equals ½Δθᵀ(G+λI)Δθ − ε g_zᵀΔθ, value and gradient (Eq. 48)."""
    problem, theta_s, x, t = tiny_problem(loss, weight_decay=WD)
    batch = Batch(x, t, x.shape[0])
    eps = 1.0 / x.shape[0]
    rx, rt = x[3:5], t[3:5]
    delta = 0.1 * torch.randn(
        theta_s.shape, generator=torch.Generator().manual_seed(5), dtype=DTYPE
    )
    g_mat = dense_gnh(problem, theta_s, x, t) + DAMPING * torch.eye(theta_s.numel(), dtype=DTYPE)
    gz = removal_gradients(problem, theta_s, rx[None], rt[None])[0]

    def obj(d):
        return linearized_pbrf_objective(problem, d, batch, rx, rt, theta_s, eps, DAMPING)

    torch.testing.assert_close(
        obj(delta), 0.5 * delta @ g_mat @ delta - eps * gz @ delta, rtol=1e-10, atol=ATOL
    )
    torch.testing.assert_close(grad(obj)(delta), g_mat @ delta - eps * gz, rtol=1e-10, atol=ATOL)


def test_masked_downweighted_cost_is_deleted_cost_up_to_constant():
    """Eq. 2 at ε = 1/N: J − ℓ_z/N = (N−1)/N × the regularized cost without z."""
    problem, theta, x, t = tiny_problem("cross_entropy", weight_decay=WD)
    n = x.shape[0]
    z = 7
    w = removal_weights(torch.arange(n), torch.tensor([[z]]), n, 1.0 / n)[0].to(DTYPE)
    masked = downweighted_objective(problem, theta, Batch(x, t, n), w)
    keep = torch.arange(n) != z
    deleted = problem.cost(theta, x[keep], t[keep])
    torch.testing.assert_close(masked, (n - 1) / n * deleted, rtol=1e-12, atol=0.0)


def test_removal_weights_mark_each_models_removed_examples():
    w = removal_weights(
        torch.tensor([4, 1, 9, 3]), torch.tensor([[1, 3], [7, 8]]), n=10, epsilon=0.1
    )
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
    # upweighting (ε < 0) is a weight above 1
    w = removal_weights(torch.tensor([2]), torch.tensor([[2]]), n=10, epsilon=-0.1)
    torch.testing.assert_close(w, torch.tensor([[2.0]]))


@pytest.mark.parametrize(
    ("loss", "group"), [("cross_entropy", 1), ("squared_error", 1), ("binary_cross_entropy", 3)]
)
def test_linearized_pbrf_optimum_equals_exact_influence(loss, group):
    """Appendix B.4: the converged linearized PBRF is θˢ + ε (G + λI)⁻¹ ∇ℓ_z (Eq. 49)."""
    problem, theta_s, x, t = tiny_problem(loss, weight_decay=WD)
    n = x.shape[0]
    removed = torch.arange(4 * group).reshape(4, group)
    base = BaseRun(theta_s, theta_s, torch.empty(0, n, dtype=torch.long), torch.empty(0))
    train = TrainConfig(optimizer={"name": "lbfgs", "tol": 1e-11}, epochs=300, batch_size=None)
    res = retrain(
        "linearized_pbrf",
        problem,
        base,
        x,
        t,
        removed,
        train=train,
        damping=DAMPING,
        schedule=Schedule(300, 1.0),
    )
    gz = removal_gradients(problem, theta_s, x[removed], t[removed])
    exact = influence_parameters(
        theta_s, exact_solve(dense_gnh(problem, theta_s, x, t), gz, damping=DAMPING), 1.0 / n
    )
    # L-BFGS stops at ‖∇‖∞ ≤ 1e-11; with λ_min(G + λI) ≥ λ + w = 0.03 that leaves
    # ‖θ − θ*‖ ≲ √d·1e-11/0.03 ≈ 3e-9 against responses ε‖q_z‖ of order 1e-2.
    move = (exact - theta_s).norm(dim=-1)
    assert ((theta_s + res.delta - exact).norm(dim=-1) <= 1e-6 * move).all()


@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
def test_linearization_error_is_second_order_in_epsilon(loss):
    """PBRF − linearized PBRF = O(ε²) while both move O(ε) from θˢ (Section 4.4)."""
    problem, theta_s, x, t = tiny_problem(loss, weight_decay=WD)
    n = x.shape[0]
    removed = torch.arange(3)[:, None]
    base = BaseRun(theta_s, theta_s, torch.empty(0, n, dtype=torch.long), torch.empty(0))
    train = TrainConfig(optimizer={"name": "lbfgs", "tol": 1e-12}, epochs=300, batch_size=None)
    errors, moves = [], []
    for eps in (2e-3, 1e-3):
        kw = dict(train=train, damping=DAMPING, epsilon=eps, schedule=Schedule(300, 1.0))
        lin = retrain("linearized_pbrf", problem, base, x, t, removed, **kw).delta
        pbrf = retrain("pbrf", problem, base, x, t, removed, **kw).delta
        errors.append((pbrf - lin).norm(dim=-1))
        moves.append(lin.norm(dim=-1))
    assert (errors[0] < 0.1 * moves[0]).all()
    ratio = errors[1] / errors[0]  # halving ε quarters the error
    assert ((ratio > 0.2) & (ratio < 0.3)).all(), ratio
