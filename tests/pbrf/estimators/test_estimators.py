"""The estimator interface and the closed forms each estimator must reproduce.

References are independent dense float64 computations (:mod:`estimator_problems`,
:func:`pbrf.curvature.dense_gnh`, ``numpy.linalg``) or derivatives of actual SGD runs.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from estimator_problems import DTYPE, dense_reference, linear_problem, make_inputs
from pydantic import ValidationError
from tiny_problems import tiny_problem

from pbrf.curvature import dense_gnh, dense_hessian
from pbrf.estimators import (
    ESTIMATOR_NAMES,
    Checkpoint,
    get_estimator,
    parse_settings,
    run_estimator,
    settings_adapter,
)
from pbrf.estimators.trak import projection_matrix
from pbrf.gradients import grad_test_loss
from pbrf.objectives import Batch, downweighted_objective, removal_weights
from pbrf.schedule import batches_of, epoch_order

# Dense float64 solves of systems with condition number ≤ ~1e4 (damping ≥ 1e-2 against
# eigenvalues ≤ ~1e2): rounding is ≲ 1e-11 relative, so 1e-8 leaves three orders of margin while
# any convention error (a factor ε, a sign, a missing λ or w) is ≥ 1e-3 relative.
RTOL = 1e-8
ATOL = 1e-12  # floor for entries that are zero up to rounding
SOLVER_BACKED = ("exact", "cg", "lissa")
HAS_SOLVER_SETTINGS = importlib.util.find_spec("pbrf.solvers.settings") is not None
needs_solver_merge = pytest.mark.skipif(
    not HAS_SOLVER_SETTINGS, reason="needs pbrf.solvers.settings (the solver-API branch)"
)
LOCAL_NAMES = tuple(n for n in ESTIMATOR_NAMES if n not in SOLVER_BACKED)
ALL_NAMES = [
    pytest.param(n, marks=needs_solver_merge) if n in SOLVER_BACKED else n for n in ESTIMATOR_NAMES
]


def close(actual: torch.Tensor, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=RTOL, atol=ATOL)


def mlp_inputs(curvature: str = "gnh", damping: float = 0.05):
    """Tiny tanh MLP (d = 57, w = 0.01, softmax), 20 training rows, 4 test rows, 3 removal sets
    of 2, and its dense curvature (GNH, or the Hessian, which is indefinite here)."""
    problem, theta, x, t = tiny_problem("cross_entropy", weight_decay=0.01)
    removed = torch.tensor([[0, 1], [5, 9], [13, 2]])
    inputs = make_inputs(
        problem, theta, x, t, n_train=20, removed=removed, damping=damping, curvature=curvature
    )
    dense = dense_gnh if curvature == "gnh" else dense_hessian
    return inputs, dense(problem, theta, inputs.x_train, inputs.t_train).numpy()


# --- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_settings_model_is_frozen_closed_and_named_after_its_key(name):
    entry = get_estimator(name)
    settings = entry.settings()
    assert entry.name == settings.name == name
    with pytest.raises(ValidationError):
        entry.settings(no_such_field=1)
    with pytest.raises(ValidationError):
        settings.name = "other"
    assert parse_settings({"name": name}) == settings
    assert settings_adapter([name]).validate_python({"name": name}) == settings


def test_the_settings_union_dispatches_on_name_and_refuses_unknown_names():
    adapter = settings_adapter(LOCAL_NAMES)
    trak = adapter.validate_python({"name": "trak", "dim": 7})
    assert type(trak) is get_estimator("trak").settings and trak.dim == 7
    with pytest.raises(ValidationError):
        adapter.validate_python({"name": "trak", "rank": 3})  # arnoldi's field
    with pytest.raises(ValueError, match="unknown estimator"):
        get_estimator("influence_but_better")
    with pytest.raises(ValueError, match="name"):
        parse_settings({"dim": 3})


def test_run_estimator_records_wall_time_memory_and_settings():
    inputs, _ = mlp_inputs()
    est = run_estimator({"name": "grad_dot"}, inputs)
    assert est.info["wall_time_s"] > 0
    assert est.info["memory_method"] == "sampled_rss" and est.info["peak_memory_mb"] >= 0
    assert est.info["settings"] == {"name": "grad_dot"}


# --- gradient similarities ---------------------------------------------------------------------


def test_grad_dot_is_the_influence_function_with_zero_curvature_and_unit_damping():
    inputs, g = mlp_inputs()
    ref = dense_reference(inputs, np.zeros_like(g), damping=1.0)
    est = get_estimator("grad_dot")(inputs)
    close(est.predicted_change, ref["change"])
    close(est.param_response, ref["delta"])
    close(est.self_influence, ref["self"])


@pytest.mark.parametrize("reduction", ["per_point", "mean_gradient"])
def test_grad_cos_is_the_cosine_of_test_and_removal_gradients(reduction):
    inputs, g = mlp_inputs()
    grads = dense_reference(inputs, np.zeros_like(g), 1.0)["grads"]
    if reduction == "per_point":  # one test point at a time: the mean over one point is its loss
        tests = np.stack(
            [
                grad_test_loss(
                    inputs.problem, inputs.theta, inputs.x_test[p : p + 1], inputs.t_test[p : p + 1]
                ).numpy()
                for p in range(inputs.x_test.shape[0])
            ]
        )
    else:
        tests = grad_test_loss(inputs.problem, inputs.theta, inputs.x_test, inputs.t_test).numpy()[
            None
        ]
    cos = (grads @ tests.T) / np.linalg.norm(grads, axis=1)[:, None] / np.linalg.norm(tests, axis=1)
    settings = get_estimator("grad_cos").settings(test_reduction=reduction)
    est = get_estimator("grad_cos")(inputs, settings)
    close(est.predicted_change, cos.mean(1))
    assert not est.calibrated and est.param_response is None and est.self_influence is None


# --- Arnoldi ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remainder", "curvature"), [("drop", "gnh"), ("damping", "gnh"), ("drop", "hessian")]
)
def test_arnoldi_with_rank_d_equals_the_exact_damped_solve(remainder, curvature):
    inputs, g = mlp_inputs(curvature)
    d = g.shape[0]
    settings = get_estimator("arnoldi").settings(rank=d, iterations=d, remainder=remainder)
    est = get_estimator("arnoldi")(inputs, settings)
    ref = dense_reference(inputs, g, inputs.damping)
    close(est.param_response, ref["delta"])
    close(est.predicted_change, ref["change"])
    close(est.self_influence, ref["self"])


def test_arnoldi_truncated_to_rank_r_is_the_inverse_on_the_top_r_eigenspace():
    inputs, g = mlp_inputs()
    r = 10
    mu, u = np.linalg.eigh(g)
    top = u[:, np.argsort(mu)[::-1][:r]]
    mu_top = np.sort(mu)[::-1][:r]
    grads = dense_reference(inputs, g, inputs.damping)["grads"]
    expected = inputs.eps * ((grads @ top) / (mu_top + inputs.damping)) @ top.T
    settings = get_estimator("arnoldi").settings(rank=r, iterations=g.shape[0])
    close(get_estimator("arnoldi")(inputs, settings).param_response, expected)


def test_arnoldi_damping_remainder_is_exact_when_the_curvature_has_rank_r():
    # 4 training rows x 3 outputs: the GNH of the 57-parameter MLP has rank ≤ 12 (w = 0), and
    # the Krylov space of r + 1 steps holds its whole range plus one null direction.
    problem, theta, x, t = tiny_problem("squared_error", n=10)
    removed = torch.tensor([[0], [3]])
    inputs = make_inputs(problem, theta, x, t, n_train=4, removed=removed, damping=0.1)
    g = dense_gnh(problem, theta, inputs.x_train, inputs.t_train).numpy()
    r = int(np.linalg.matrix_rank(g, tol=1e-10 * np.abs(g).max()))
    assert r < g.shape[0]
    settings = get_estimator("arnoldi").settings(rank=r, iterations=r + 1, remainder="damping")
    est = get_estimator("arnoldi")(inputs, settings)
    close(est.param_response, dense_reference(inputs, g, 0.1)["delta"])


# --- TRAK -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "curvature"), [(0, "gnh"), (7, "gnh"), (0, "hessian")])
def test_trak_with_an_orthogonal_projection_of_dim_at_least_d_equals_the_exact_solve(
    extra, curvature
):
    inputs, g = mlp_inputs(curvature)
    settings = get_estimator("trak").settings(
        dim=g.shape[0] + extra, projection="orthogonal", block=16
    )
    est = get_estimator("trak")(inputs, settings)
    ref = dense_reference(inputs, g, inputs.damping)
    close(est.param_response, ref["delta"])
    close(est.predicted_change, ref["change"])
    close(est.self_influence, ref["self"])


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_trak_is_the_damped_solve_of_the_projected_kernel(kind):
    inputs, g = mlp_inputs()
    k = 20
    settings = get_estimator("trak").settings(dim=k, projection=kind, seed=3, block=7)
    p = projection_matrix(g.shape[0], k, kind, seed=3, dtype=DTYPE).numpy()
    ref = dense_reference(inputs, g, inputs.damping)
    coeff = np.linalg.solve(p.T @ g @ p + inputs.damping * np.eye(k), p.T @ ref["grads"].T)
    est = get_estimator("trak")(inputs, settings)
    close(est.param_response, inputs.eps * (p @ coeff).T)
    close(est.self_influence, inputs.eps * np.einsum("mk,km->m", ref["grads"] @ p, coeff))


def test_projections_preserve_the_parameter_scale():
    d = 200
    orth = projection_matrix(d, d + 3, "orthogonal", dtype=DTYPE)
    np.testing.assert_allclose((orth @ orth.T).numpy(), np.eye(d), atol=1e-12)
    rad = projection_matrix(d, 50, "rademacher", dtype=DTYPE)
    np.testing.assert_allclose((rad * rad).sum(1).numpy(), 1.0, rtol=1e-12)
    # Gaussian rows: ‖p_i‖² ~ χ²_k / k, whose mean over d rows has sd √(2/(k d)) = 0.014;
    # 0.07 is five standard deviations.
    gauss = projection_matrix(d, 50, "gaussian", dtype=DTYPE)
    assert abs(float((gauss * gauss).sum(1).mean()) - 1.0) < 0.07


# --- TracIn -----------------------------------------------------------------------------------


def _sgd_effect(inputs, lr: torch.Tensor, z: int, batch_size: int | None, epochs: int):
    """``L_test(θ_without_z) − L_test(θ)`` after SGD from θ on the batch-mean objective of
    :mod:`pbrf.objectives` (removed example weighted 0, same batch order), differentiable in lr."""
    problem, x, t, n = inputs.problem, inputs.x_train, inputs.t_train, inputs.n_train
    losses = []
    for removed in (torch.tensor([[z]]), torch.empty(1, 0, dtype=torch.long)):
        theta = inputs.theta.clone().requires_grad_(True)
        for epoch in range(epochs):
            for idx in batches_of(epoch_order(n, 0, epoch), batch_size):
                w = removal_weights(idx, removed, n, 1.0 / n)[0].to(DTYPE)
                batch = Batch(x[idx], t[idx], int(idx.numel()))
                obj = downweighted_objective(problem, theta, batch, w)
                theta = theta - lr * torch.autograd.grad(obj, theta, create_graph=True)[0]
        losses.append(problem.loss(problem.f(theta, inputs.x_test), inputs.t_test).mean())
    return losses[0] - losses[1]


@pytest.mark.parametrize(
    ("model", "batch_size", "epochs"),
    [("linear_least_squares", None, 1), ("mlp", 4, 2)],
    ids=["one_full_batch_step", "two_minibatch_epochs"],
)
def test_tracin_is_the_first_order_effect_of_removing_the_example_from_sgd(
    model, batch_size, epochs
):
    """d/dη at η = 0 of the actual retraining effect equals TracIn with one checkpoint at the
    start (its learning rate factor η, ``visits = epochs``, batch-size factor 1/B)."""
    if model == "mlp":
        problem, theta, x, t = tiny_problem("cross_entropy", n=16, weight_decay=0.05)
        n_train = 12  # divisible by the batch size: every batch has the nominal size B
    else:
        problem, _, theta, x, t = linear_problem("squared_error", n=14, d_in=3, out=2)
        n_train = 10
    zs = [0, 3, 7]
    removed = torch.tensor([[z] for z in zs])
    inputs = make_inputs(problem, theta, x, t, n_train=n_train, removed=removed, damping=0.0)
    lr = torch.zeros((), dtype=DTYPE, requires_grad=True)
    first_order = [
        float(torch.autograd.grad(_sgd_effect(inputs, lr, z, batch_size, epochs), lr)[0])
        for z in zs
    ]
    tracin_inputs = make_inputs(
        problem,
        theta,
        x,
        t,
        n_train=n_train,
        removed=removed,
        damping=0.0,
        checkpoints=(Checkpoint(theta, lr=1.0, visits=float(epochs)),),
        train_batch_size=batch_size,
    )
    est = get_estimator("tracin")(tracin_inputs)
    close(est.predicted_change, np.array(first_order))
    assert est.param_response is None


# --- solver-backed estimators (need the solver-API branch) --------------------------------------

# Relative accuracy each solver reaches on the tiny MLP (eigenvalues of G in [0.01, 0.65],
# λ = 0.05): the exact solve to rounding; CG at tol 1e-12 to ≈ 1e-12 · cond; LiSSA contracts
# the error by (1 − (μ_min + λ)/σ)^T with σ = 1.5 (λ_max + λ) ≈ 1.06, i.e. 0.943^400 ≈ 1e-10.
SOLVER_CASES = {
    "exact": ({}, RTOL),
    "cg": ({"max_iter": 500, "tol": 1e-12}, 1e-7),
    "lissa": ({"depth": 400, "repeats": 1, "batch_size": None}, 1e-6),
}


@needs_solver_merge
@pytest.mark.parametrize("name", SOLVER_CASES)
def test_solver_backed_estimators_equal_the_dense_damped_solve(name):
    kw, rtol = SOLVER_CASES[name]
    inputs, g = mlp_inputs()
    entry = get_estimator(name)
    est = entry(inputs, entry.settings(**kw))
    ref = dense_reference(inputs, g, inputs.damping)
    for got, key in [(est.param_response, "delta"), (est.predicted_change, "change")]:
        err = np.linalg.norm(got.numpy() - ref[key]) / np.linalg.norm(ref[key])
        assert err <= rtol, f"{key}: relative error {err:.2e}"
    err = np.abs(est.self_influence.numpy() / ref["self"] - 1).max()  # self-influence > 0
    assert err <= rtol, f"self-influence: relative error {err:.2e}"
    assert est.info["solver"] == name and est.info["converged"]
