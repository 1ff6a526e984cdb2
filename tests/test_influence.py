"""Influence estimates: closed-form identities and the logistic-regression LOO check (GUIDE §5.3)."""

from __future__ import annotations

import pytest
import torch
from tiny_problems import DTYPE, tiny_problem
from torch.func import grad, grad_and_value, vmap

from pbrf.config import DataConfig, TrainConfig
from pbrf.curvature import dense_gnh
from pbrf.data import load_dataset
from pbrf.influence import (
    eval_test_loss,
    grad_test_loss,
    influence_parameters,
    inverse_curvature_product,
    predicted_test_loss_change,
    predicted_test_loss_change_stest,
    removal_gradients,
    self_influence,
)
from pbrf.lbfgs import lbfgs_stacked
from pbrf.losses import get_loss
from pbrf.metrics import pearson, spearman
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import train_base
from pbrf.solvers import exact_solve

DAMPING = 1e-3


def test_s_test_trick_equals_direct_prediction():
    """Eq. 53: ε ∇L_testᵀ (G+λI)⁻¹ g_z = ε g_zᵀ (G+λI)⁻¹ ∇L_test (G symmetric)."""
    problem, theta, x, t = tiny_problem("cross_entropy", weight_decay=0.01)
    g = dense_gnh(problem, theta, x, t)
    gz = removal_gradients(problem, theta, x[:5, None], t[:5, None])
    test_grad = grad_test_loss(problem, theta, x[-4:], t[-4:])
    eps = 1.0 / x.shape[0]
    direct = predicted_test_loss_change(test_grad, exact_solve(g, gz, damping=DAMPING), eps)
    s_test = exact_solve(g, test_grad, damping=DAMPING)
    torch.testing.assert_close(
        predicted_test_loss_change_stest(s_test, gz, eps), direct, rtol=1e-9, atol=1e-14
    )
    ihvp = exact_solve(g, gz, damping=DAMPING)
    assert (self_influence(gz, ihvp, eps) > 0).all()  # (G+λI)⁻¹ is positive definite
    torch.testing.assert_close(influence_parameters(theta, ihvp, eps)[2], theta + eps * ihvp[2])


def test_removal_gradients_are_per_example_gradients_with_the_regularizer():
    problem, theta, x, t = tiny_problem("squared_error", weight_decay=0.05)
    gz = removal_gradients(problem, theta, x[:3, None], t[:3, None])
    for i in range(3):
        expected = grad(
            lambda th, i=i: problem.example_losses(th, x[i : i + 1], t[i : i + 1]).sum()
        )(theta)
        torch.testing.assert_close(gz[i], expected)


@pytest.mark.parametrize("solver", ["cg", "lissa"])
def test_iterative_solvers_agree_with_exact_through_the_influence_api(solver):
    problem, theta, x, t = tiny_problem("cross_entropy", weight_decay=0.01)
    gz = removal_gradients(problem, theta, x[:3, None], t[:3, None])
    exact = inverse_curvature_product(problem, theta, x, t, gz, damping=0.05, solver="exact").x
    res = inverse_curvature_product(
        problem,
        theta,
        x,
        t,
        gz,
        damping=0.05,
        solver=solver,
        depth=3000,
        repeats=1,
        batch_size=None,
        cg_tol=1e-12,
    )
    assert float((res.x - exact).norm() / exact.norm()) < 1e-4
    if solver == "lissa":
        assert res.info["horizon"] == pytest.approx(3000 / res.info["scale"])


@pytest.fixture(scope="module")
def cancer():
    """Logistic regression on UCI Cancer (scikit-learn breast cancer), L2 = 0.01, L-BFGS."""
    ds = load_dataset(DataConfig(name="breast_cancer")).to("cpu", DTYPE)
    model = build_model("logistic_regression", input_shape=ds.input_shape, output_dim=1, seed=0).to(
        DTYPE
    )
    problem = Problem.from_module(model, get_loss("binary_cross_entropy"), weight_decay=0.01)
    train = TrainConfig(optimizer="lbfgs", epochs=500, weight_decay=0.01, lbfgs_tol=1e-12)
    base = train_base(problem, flat_params(model), ds.x_train, ds.t_train, train)
    return ds, problem, base, train


def _true_loo(
    problem: Problem, theta0: torch.Tensor, x: torch.Tensor, t: torch.Tensor, z: int
) -> torch.Tensor:
    """Leave-one-out retraining from scratch: z physically deleted, plain mean loss + L2."""
    keep = torch.arange(x.shape[0]) != z
    xd, td = x[keep], t[keep]
    cost = lambda th: problem.cost(th, xd, td)  # noqa: E731
    res = lbfgs_stacked(
        vmap(grad_and_value(cost)), vmap(cost), theta0[None], max_iter=500, tol_grad=1e-12
    )
    return res.theta[0]


def test_logistic_regression_influence_matches_true_leave_one_out(cancer):
    """Table 5's LR/Cancer row and Figure 1 (left): influence ≈ LOO, Pearson ≥ 0.99 on 20 removals."""
    ds, problem, base, _ = cancer
    assert problem.cost(base.theta_s, ds.x_train, ds.t_train) < 0.2
    n = ds.n_train
    removed = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:20]
    x_test, t_test = ds.x_test, ds.t_test
    loss0 = eval_test_loss(problem, base.theta_s, x_test, t_test)
    actual = torch.stack(
        [
            eval_test_loss(
                problem,
                _true_loo(problem, base.theta0, ds.x_train, ds.t_train, int(z)),
                x_test,
                t_test,
            )
            - loss0
            for z in removed
        ]
    )
    gz = removal_gradients(
        problem, base.theta_s, ds.x_train[removed, None], ds.t_train[removed, None]
    )
    test_grad = grad_test_loss(problem, base.theta_s, x_test, t_test)
    for solver in ("exact", "lissa"):
        ihvp = inverse_curvature_product(
            problem,
            base.theta_s,
            ds.x_train,
            ds.t_train,
            gz,
            damping=DAMPING,
            solver=solver,
            depth=8000,
            repeats=1,
            batch_size=None,
        ).x
        predicted = predicted_test_loss_change(test_grad, ihvp, 1.0 / n)
        assert pearson(predicted, actual) >= 0.99, (solver, pearson(predicted, actual))
        assert spearman(predicted, actual) >= 0.95
