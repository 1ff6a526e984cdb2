"""Sign and ε of the estimators against actual leave-out retraining of strongly convex models.

Ridge regression (closed-form optimum) and L2-regularized logistic regression (scipy L-BFGS,
then Newton steps to a gradient norm below 1e-12; float64) are retrained without each removal
set; the actual change of the mean test loss must be predicted with Pearson ≥ 0.99 and a
least-squares slope near 1 (a wrong sign gives Pearson ≈ −1, a wrong ε a slope off by ≥ 2×).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.optimize
import torch
from estimator_problems import DTYPE, dense_reference, linear_gnh, make_inputs
from torch import nn

from pbrf.estimators import get_estimator
from pbrf.losses import get_loss
from pbrf.params import flat_params, load_flat_
from pbrf.problem import Problem

DAMPING = 1e-3  # the study's default
MIN_PEARSON = 0.99
# Exact influence differs from leave-out retraining of a quadratic by the leverage factor
# 1/(1 − ε x̃ᵀG⁻¹x̃), on average 1 + (d_in + 1)/N ≈ 1.013 here (N = 300, 4 inputs with bias),
# and for logistic regression also by the third-derivative term (measured slopes: 1.02-1.05).
# 0.15 is 3× the largest; a wrong ε is off by a factor ≥ 2, a wrong sign by −2.
SLOPE_TOL = 0.15
N_TRAIN, N_TEST, D_IN = 300, 40, 3
HAS_SOLVER_SETTINGS = importlib.util.find_spec("pbrf.solvers.settings") is not None
needs_solver_merge = pytest.mark.skipif(
    not HAS_SOLVER_SETTINGS, reason="needs pbrf.solvers.settings (the solver-API branch)"
)
EXACT_ON_LINEAR = {
    "arnoldi": {"rank": 1000, "iterations": 1000},  # capped at d: the full eigenspace
    "trak": {"dim": 1000, "projection": "orthogonal"},  # k ≥ d, PPᵀ = I
    "ekfac": {},
    "kfac": {},
}
SOLVERS = {
    "exact": {},
    "cg": {"max_iter": 500, "tol": 1e-10},
    "lissa": {"depth": 400, "repeats": 1, "batch_size": None},  # error ≲ 1e-6 here
}


def _params(names_settings: dict, skip: frozenset = frozenset()) -> list:
    out = []
    for name, kw in names_settings.items():
        marks = [needs_solver_merge] if name in SOLVERS else []
        if name not in skip:
            out.append(pytest.param(name, kw, marks=marks, id=name))
    return out


def _data(loss: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_TRAIN + N_TEST, D_IN))
    w_true = np.array([1.5, -2.0, 0.5])
    if loss == "squared_error":
        t = np.stack([x @ w_true, x @ w_true[::-1]], 1) + 0.5 * rng.standard_normal((len(x), 2))
    else:
        p = 1 / (1 + np.exp(-(x @ w_true + 0.3)))
        t = (rng.random(len(x)) < p).astype(float)[:, None]
    return x, t, np.hstack([x, np.ones((len(x), 1))])


def _ridge_fit(xt: np.ndarray, t: np.ndarray, w: float) -> np.ndarray:
    """argmin (1/n) Σ ½‖θ_o·x̃ − t‖² + (w/2)‖θ‖², rows θ_o = [W_o, b_o], shape (out, d_in + 1)."""
    n = len(xt)
    return np.linalg.solve(xt.T @ xt / n + w * np.eye(xt.shape[1]), xt.T @ t / n).T


def _logistic_fit(xt: np.ndarray, t: np.ndarray, w: float, start: np.ndarray) -> np.ndarray:
    """L-BFGS on the regularized mean loss, then Newton steps to a gradient norm < 1e-12."""

    def cost(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = xt @ theta
        loss = np.logaddexp(0, s) - t[:, 0] * s
        sig = 1 / (1 + np.exp(-s))
        return loss.mean() + 0.5 * w * theta @ theta, xt.T @ (sig - t[:, 0]) / len(xt) + w * theta

    theta = scipy.optimize.minimize(
        cost, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000}
    ).x
    for _ in range(5):
        sig = 1 / (1 + np.exp(-(xt @ theta)))
        hess = (xt.T * (sig * (1 - sig))) @ xt / len(xt) + w * np.eye(len(theta))
        theta = theta - np.linalg.solve(hess, cost(theta)[1])
    assert np.linalg.norm(cost(theta)[1]) < 1e-12
    return theta[None]


def _test_loss(loss: str, theta: np.ndarray, xt: np.ndarray, t: np.ndarray) -> float:
    s = xt @ theta.T
    if loss == "squared_error":
        return float((0.5 * ((s - t) ** 2).sum(1)).mean())
    return float((np.logaddexp(0, s) - t * s).sum(1).mean())


def _study(loss: str, weight_decay: float, group: int):
    x, t, xt = _data(loss)
    train, test = slice(0, N_TRAIN), slice(N_TRAIN, None)
    fit = (
        (lambda xs, ts, start: _ridge_fit(xs, ts, weight_decay))
        if loss == "squared_error"
        else (lambda xs, ts, start: _logistic_fit(xs, ts, weight_decay, start))
    )
    theta_s = fit(xt[train], t[train], np.zeros(D_IN + 1))
    removed = np.random.default_rng(1).permutation(N_TRAIN)[: 16 * group].reshape(16, group)
    base = _test_loss(loss, theta_s, xt[test], t[test])
    actual = []
    for rows in removed:
        keep = np.setdiff1d(np.arange(N_TRAIN), rows)
        theta = fit(xt[keep], t[keep], theta_s[0])
        actual.append(_test_loss(loss, theta, xt[test], t[test]) - base)
    module = nn.Linear(D_IN, t.shape[1]).to(DTYPE)
    flat = np.concatenate([theta_s[:, :D_IN].ravel(), theta_s[:, D_IN]])  # [W row-major, b]
    load_flat_(module, torch.from_numpy(flat))
    problem = Problem.from_module(module, get_loss(loss), weight_decay)
    inputs = make_inputs(
        problem,
        flat_params(module),
        torch.from_numpy(x),
        torch.from_numpy(t),
        n_train=N_TRAIN,
        removed=torch.from_numpy(removed),
        damping=DAMPING,
        module=module,
    )
    return inputs, module, np.array(actual)


def _check_agreement(predicted: np.ndarray, actual: np.ndarray) -> None:
    pearson = np.corrcoef(predicted, actual)[0, 1]
    slope = (predicted @ actual) / (predicted @ predicted)
    assert pearson >= MIN_PEARSON, f"Pearson {pearson:.4f}"
    assert abs(slope - 1) <= SLOPE_TOL, f"slope {slope:.3f}"


@pytest.fixture(scope="module", params=[1, 2], ids=["single", "pairs"])
def ridge(request):
    return _study("squared_error", 0.05, request.param)


@pytest.fixture(scope="module")
def logistic():
    return _study("binary_cross_entropy", 0.01, 1)


def test_the_dense_reference_itself_predicts_ridge_retraining(ridge):
    inputs, module, actual = ridge
    g = linear_gnh("squared_error", module, inputs.x_train, 0.05)
    _check_agreement(dense_reference(inputs, g, DAMPING)["change"], actual)


@pytest.mark.parametrize(("name", "kw"), _params({**SOLVERS, **EXACT_ON_LINEAR}))
def test_estimators_predict_ridge_leave_out_retraining(ridge, name, kw):
    inputs, _, actual = ridge
    entry = get_estimator(name)
    est = entry(inputs, entry.settings(**kw))
    _check_agreement(est.predicted_change.numpy(), actual)


@pytest.mark.parametrize(
    ("name", "kw"), _params({**SOLVERS, **EXACT_ON_LINEAR}, skip=frozenset({"kfac", "ekfac"}))
)
def test_estimators_predict_logistic_leave_one_out_retraining(logistic, name, kw):
    """K-FAC and EK-FAC are left out: G = (1/N) Σ σ(1−σ) x̃x̃ᵀ is neither a Kronecker product
    nor diagonal in the eigenbasis of E[x̃x̃ᵀ], so they are approximations here (measured
    Pearson 0.93-0.95 on this problem), exact only in the ridge case above."""
    inputs, _, actual = logistic
    entry = get_estimator(name)
    est = entry(inputs, entry.settings(**kw))
    _check_agreement(est.predicted_change.numpy(), actual)
