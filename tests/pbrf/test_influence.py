"""Influence estimates: closed-form identities, :func:`inverse_curvature_product` with every
solver against SciPy on explicit float64 matrices, and the logistic-regression LOO check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from tiny_problems import DTYPE, tiny_problem
from torch.func import grad, grad_and_value, vmap

from pbrf.curvature import dense_gnh, dense_hessian
from pbrf.data import load_dataset
from pbrf.influence import (
    IHVPResult,
    grad_test_loss,
    influence_parameters,
    inverse_curvature_product,
    predicted_test_loss_change,
    predicted_test_loss_change_stest,
    removal_gradients,
    self_influence,
    top_curvature_eigenvalue,
)
from pbrf.lbfgs import lbfgs_stacked
from pbrf.losses import get_loss
from pbrf.metrics import eval_test_loss, pearson, spearman
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import train_base
from pbrf.solvers import (
    CGSettings,
    ExactSettings,
    LissaSettings,
    NotPositiveDefiniteError,
    exact_solve,
)
from pbrf.study.config import DataConfig, TrainConfig

DAMPING = 1e-3
# Direct float64 solves: error ≲ cond · eps with cond(G + λI) ≤ ~1e4 on these tiny problems, so
# 1e-9 has margin and still catches any algebraic slip (those are ≥ 1e-3).
DIRECT_RTOL = 1e-9
# Iterative solvers run to a 1e-12 residual (CG) or e^-14 decay (LiSSA) of the slowest mode.
ITER_RTOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def scipy_solve(matrix: torch.Tensor, v: torch.Tensor, damping: float, **kw) -> torch.Tensor:
    """Independent reference: SciPy's LAPACK solve of (C + λI) X = Vᵀ in float64."""
    a = matrix.double().numpy() + damping * np.eye(matrix.shape[0])
    return torch.from_numpy(scipy.linalg.solve(a, v.double().numpy().T, **kw).T)


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


@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error", "binary_cross_entropy"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_dual_exact_solve_equals_primal_and_scipy(loss, weight_decay):
    """The Woodbury solve through H^{1/2}J (singular H for softmax) is the dense solve."""
    problem, theta, x, t = tiny_problem(loss, n=9, weight_decay=weight_decay)
    gz = removal_gradients(problem, theta, x[:3, None], t[:3, None])
    ref = scipy_solve(dense_gnh(problem, theta, x, t), gz, DAMPING, assume_a="pos")
    dual = inverse_curvature_product(
        problem, theta, x, t, gz, damping=DAMPING, solver=ExactSettings(method="dual")
    )
    primal = inverse_curvature_product(
        problem, theta, x, t, gz, damping=DAMPING, solver=ExactSettings(method="primal")
    )
    assert dual.info["method"] == "dual" and primal.info["method"] == "primal"
    assert dual.converged and primal.converged and dual.warnings == primal.warnings == ()
    assert dual.info["factorization"] == primal.info["factorization"] == "cholesky"
    rank = 2 if loss == "cross_entropy" else 3  # C − 1 rows for softmax, C otherwise
    assert dual.info["rank"] == rank and dual.info["matrix_size"] == 9 * rank
    assert rel_err(dual.x, ref) <= DIRECT_RTOL and rel_err(primal.x, ref) <= DIRECT_RTOL


def test_exact_auto_picks_dual_only_when_the_kernel_is_smaller():
    problem, theta, x, t = tiny_problem("cross_entropy", n=40)  # d = 57, N·r = 80
    v = removal_gradients(problem, theta, x[:2, None], t[:2, None])
    auto = inverse_curvature_product(
        problem, theta, x, t, v, damping=DAMPING, solver=ExactSettings()
    )
    assert auto.info["method"] == "primal" and auto.info["matrix_bytes"] == 8 * 57**2
    small = inverse_curvature_product(
        problem, theta, x[:20], t[:20], v, damping=DAMPING, solver=ExactSettings()
    )  # N·r = 40 < d
    assert small.info["method"] == "dual" and small.info["matrix_bytes"] == 8 * 40**2


def test_exact_solve_is_float64_for_a_float32_model():
    """A float32 model gets the float64 answer rounded to float32, not a float32 solve."""
    problem, theta, x, t = tiny_problem("cross_entropy", n=9)
    damping = 1e-6  # cond(G + λI) ≈ 1e6: a float32 factorization keeps ~1 digit
    theta32, x32 = theta.float(), x.float()
    v32 = removal_gradients(problem, theta, x[:3, None], t[:3, None]).float()
    # reference: the float32 inputs, exactly, solved by SciPy in float64
    dense = dense_gnh(problem, theta32.double(), x32.double(), t)
    ref = scipy_solve(dense, v32, damping, assume_a="pos")
    for method in ("dual", "primal"):
        res = inverse_curvature_product(
            problem, theta32, x32, t, v32, damping=damping, solver=ExactSettings(method=method)
        )
        assert res.x.dtype == torch.float32 and res.info["compute_dtype"] == "float64"
        # only the final rounding to float32 (6e-8) remains
        assert rel_err(res.x.double(), ref) <= 1e-6
    float32_solve = exact_solve(dense.float(), v32, damping=damping)
    assert rel_err(float32_solve.double(), ref) > 1e-4  # what a float32 solve would give


@pytest.mark.slow
@pytest.mark.parametrize("curvature", ["gnh", "hessian"])
def test_every_solver_matches_the_dense_reference(curvature):
    problem, theta, x, t = tiny_problem("cross_entropy", weight_decay=0.01)
    gz = removal_gradients(problem, theta, x[:3, None], t[:3, None])
    # the Hessian at this (random) θ has eigenvalues down to −0.32: damp it into an SPD system
    damping = 0.05 if curvature == "gnh" else 0.5
    dense = (dense_gnh if curvature == "gnh" else dense_hessian)(problem, theta, x, t)
    eig = np.linalg.eigvalsh(dense.numpy()) + damping
    assert eig.min() > 0 and eig.max() < 3.0  # SPD once damped; σ = 3 exceeds λ_max + λ
    ref = scipy_solve(dense, gz, damping, assume_a="pos")
    # LiSSA's slowest mode decays by (1 − (λ_min + λ)/σ) per step: reach e^-16 (σ_auto ≈ 1.5 λ_max)
    depth_auto = math.ceil(16 * 1.5 * eig.max() / eig.min())
    depth_fixed = math.ceil(16 * 3.0 / eig.min())
    settings = [
        ExactSettings(),
        CGSettings(tol=1e-12),
        LissaSettings(depth=depth_auto),
        LissaSettings(depth=depth_fixed, scale=3.0),
    ]
    for solver in settings:
        res = inverse_curvature_product(
            problem, theta, x, t, gz, damping=damping, solver=solver, curvature=curvature
        )
        assert isinstance(res, IHVPResult) and res.solver == solver.name
        assert res.converged and res.warnings == (), (solver, res.warnings)
        tol = DIRECT_RTOL if solver.name == "exact" else ITER_RTOL
        assert rel_err(res.x, ref) <= tol, (solver, rel_err(res.x, ref))
        if solver.name == "lissa":
            assert res.info["horizon"] == pytest.approx(solver.depth / res.info["scale"])
            assert res.info["depth"] == solver.depth and res.info["repeats"] == 1
        if solver.name == "cg":
            assert res.info["max_residual"] <= 1e-12 and len(res.info["residuals"]) == 3
    # a single right-hand side keeps its shape
    one = inverse_curvature_product(
        problem, theta, x, t, gz[0], damping=damping, solver=ExactSettings(), curvature=curvature
    )
    assert one.x.shape == gz[0].shape and rel_err(one.x, ref[0]) <= DIRECT_RTOL


def test_given_top_eigenvalue_equals_the_power_iteration_path():
    problem, theta, x, t = tiny_problem("squared_error", weight_decay=0.01)
    gz = removal_gradients(problem, theta, x[:2, None], t[:2, None])
    settings = LissaSettings(depth=200)
    estimated = inverse_curvature_product(problem, theta, x, t, gz, damping=0.01, solver=settings)
    eig = top_curvature_eigenvalue(problem, theta, x, t, curvature="gnh", iters=30, seed=0)
    assert estimated.info["top_eigenvalue_source"] == "power_iteration"
    assert estimated.info["power_converged"] is eig.converged is True
    assert estimated.info["top_eigenvalue"] == eig.value  # same start (seed 0), same products
    dense = dense_gnh(problem, theta, x, t)
    assert eig.value == pytest.approx(float(np.linalg.eigvalsh(dense.numpy()).max()), rel=1e-3)
    given = inverse_curvature_product(
        problem, theta, x, t, gz, damping=0.01, solver=settings, top_eigenvalue=eig.value
    )
    assert given.info["top_eigenvalue_source"] == "given" and given.info["power_iterations"] is None
    assert given.info["scale"] == estimated.info["scale"] == 1.5 * (eig.value + 0.01)
    torch.testing.assert_close(given.x, estimated.x, rtol=0, atol=0)
    # CG records a given eigenvalue without using it
    cg = inverse_curvature_product(
        problem, theta, x, t, gz, damping=0.01, solver=CGSettings(), top_eigenvalue=eig.value
    )
    assert cg.info["top_eigenvalue"] == eig.value


def test_scale_grid_on_minibatches_equals_lissa_at_the_chosen_scale():
    """``scale='grid'`` with sampled minibatches: every σ starts from the same draws, so the
    result is the fixed-σ run at the chosen σ, bit for bit; the σ below (λ_max + λ)/2 of the
    full-data GNH (a dense eigendecomposition) is recorded as diverged."""
    problem, theta, x, t = tiny_problem("cross_entropy", n=24, weight_decay=0.0)
    gz = removal_gradients(problem, theta, x[:3, None], t[:3, None])
    top = float(np.linalg.eigvalsh(dense_gnh(problem, theta, x, t).numpy()).max())
    low, high = 0.2 * top, 4.0 * (top + DAMPING)
    common = {"depth": 400, "batch_size": 8, "repeats": 2, "seed": 3}
    grid = LissaSettings(scale="grid", scale_grid=(high, low), **common)
    res = inverse_curvature_product(problem, theta, x, t, gz, damping=DAMPING, solver=grid)
    fixed = LissaSettings(scale=high, **common)
    alone = inverse_curvature_product(problem, theta, x, t, gz, damping=DAMPING, solver=fixed)
    assert res.info["scale"] == high and res.info["horizon"] == 400 / high
    torch.testing.assert_close(res.x, alone.x, rtol=0, atol=0)
    first, chosen = res.info["scale_trials"]
    assert first.startswith(f"σ={low:g}: diverged at step") and chosen.endswith("(chosen)")
    assert alone.info["scale_trials"] is None


def test_unconverged_cg_is_reported_not_hidden():
    problem, theta, x, t = tiny_problem("cross_entropy", weight_decay=0.01)
    gz = removal_gradients(problem, theta, x[:2, None], t[:2, None])
    res = inverse_curvature_product(
        problem, theta, x, t, gz, damping=1e-3, solver=CGSettings(max_iter=3)
    )
    assert not res.converged and res.info["iterations"] == 3
    assert res.info["max_residual"] > 1e-8 and "max_iter=3" in res.warnings[0]


def test_indefinite_hessian_exact_falls_back_and_cg_raises():
    problem, theta, x, t = tiny_problem("cross_entropy", n=10)
    damping = 1e-4
    hess = dense_hessian(problem, theta, x, t)
    assert float(torch.linalg.eigvalsh(hess).min()) + damping < 0  # indefinite when damped
    gz = removal_gradients(problem, theta, x[:2, None], t[:2, None])
    res = inverse_curvature_product(
        problem, theta, x, t, gz, damping=damping, solver=ExactSettings(), curvature="hessian"
    )
    assert res.info["factorization"] == "lu" and not res.converged
    assert "Cholesky failed" in res.warnings[0]
    assert rel_err(res.x, scipy_solve(hess, gz, damping)) <= DIRECT_RTOL
    with pytest.raises(NotPositiveDefiniteError) as info:
        inverse_curvature_product(
            problem, theta, x, t, gz, damping=damping, solver=CGSettings(), curvature="hessian"
        )
    assert info.value.curvature <= 0 and info.value.damping == damping


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"solver": LissaSettings(batch_size=25)}, ValueError, "batch_size=25 exceeds the 24"),
        ({"solver": LissaSettings(batch_size=24, repeats=2)}, ValueError, "repeats=2"),
        ({"solver": ExactSettings(method="dual"), "curvature": "hessian"}, ValueError, "method"),
        ({"solver": {"name": "cg"}}, TypeError, "solver must be"),
        ({"solver": CGSettings(), "damping": -1.0}, ValueError, "damping"),
        ({"solver": CGSettings(), "curvature": "fisher"}, ValueError, "curvature"),
        ({"solver": CGSettings(), "chunk_size": 0}, ValueError, "chunk_size"),
        ({"solver": CGSettings(), "top_eigenvalue": float("nan")}, ValueError, "top_eigenvalue"),
    ],
)
def test_inverse_curvature_product_validates_arguments_first(kwargs, error, match):
    problem, theta, x, t = tiny_problem("cross_entropy")
    kwargs = {"damping": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        inverse_curvature_product(problem, theta, x, t, theta[None], **kwargs)
    with pytest.raises(ValueError, match="rhs must have shape"):
        inverse_curvature_product(
            problem, theta, x, t, theta[None, :-1], damping=0.1, solver=CGSettings()
        )
    with pytest.raises(ValueError, match="dual"):
        # no damping and no weight decay: the dual shift μ = w + λ is 0
        inverse_curvature_product(
            problem, theta, x, t, theta[None], damping=0.0, solver=ExactSettings(method="dual")
        )


@pytest.fixture(scope="module")
def cancer():
    """Logistic regression on UCI Cancer (scikit-learn breast cancer), L2 = 0.01, L-BFGS."""
    ds = load_dataset(DataConfig(name="breast_cancer")).to("cpu", DTYPE)
    model = build_model("logistic_regression", input_shape=ds.input_shape, output_dim=1, seed=0).to(
        DTYPE
    )
    problem = Problem.from_module(model, get_loss("binary_cross_entropy"), weight_decay=0.01)
    train = TrainConfig(
        optimizer={"name": "lbfgs", "tol": 1e-12}, epochs=500, weight_decay=0.01, batch_size=None
    )
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


@pytest.mark.slow
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
    for solver in (ExactSettings(), LissaSettings(depth=8000)):
        ihvp = inverse_curvature_product(
            problem, base.theta_s, ds.x_train, ds.t_train, gz, damping=DAMPING, solver=solver
        ).x
        predicted = predicted_test_loss_change(test_grad, ihvp, 1.0 / n)
        assert pearson(predicted, actual) >= 0.99, (solver, pearson(predicted, actual))
        assert spearman(predicted, actual) >= 0.95
