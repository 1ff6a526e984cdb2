"""K-FAC and EK-FAC through kronfluence: where they are exact, and the Fisher/damping conversion.

Every reference is built without kronfluence: closed-form GNHs of linear layers
(:mod:`estimator_problems`) or :func:`pbrf.curvature.dense_gnh`, solved with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from estimator_problems import (
    DTYPE,
    dense_reference,
    linear_gnh,
    linear_problem,
    make_inputs,
    output_hessians,
)

from pbrf.curvature import dense_gnh
from pbrf.estimators import get_estimator
from pbrf.estimators._kronfluence import fit_preconditioner
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem

# Float64 factors and solves of systems with condition number ≤ ~1e3: rounding ≲ 1e-12
# relative; a wrong √m, count, damping or layout is ≥ 1e-2 relative.
RTOL = 1e-8
ATOL = 1e-12
# fisher="sampled" draws 400 targets for each of 30 examples: each entry of the estimated
# output-gradient covariance S has standard error ≈ √(2/12000) ≈ 0.013, so ‖Ŝ − I‖₂ stays
# below ≈ 0.05 and the relative error of (A ⊗ Ŝ + δI)⁻¹ g below ≈ 0.05 as well; 0.1 is a 2×
# margin (the draws are seeded, so the test is deterministic).
SAMPLED_RTOL = 0.1


def close(actual: torch.Tensor, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=RTOL, atol=ATOL)


def linear_inputs(loss: str, weight_decay: float, *, n: int = 36, out: int = 3):
    problem, module, theta, x, t = linear_problem(
        loss, n=n, d_in=4, out=out, weight_decay=weight_decay
    )
    removed = torch.tensor([[0, 1], [4, 7], [11, 2], [20, 21]])
    inputs = make_inputs(
        problem, theta, x, t, n_train=n - 6, removed=removed, damping=0.01, module=module
    )
    return inputs, module


@pytest.mark.parametrize("strategy", ["kfac", "ekfac"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_kfac_and_ekfac_equal_the_exact_solve_on_a_linear_layer_with_squared_error(
    strategy, weight_decay
):
    """The GNH of y = Wx + b under ½‖y − t‖² is E[x̃x̃ᵀ] ⊗ I: one Kronecker factor, exactly."""
    inputs, module = linear_inputs("squared_error", weight_decay)
    g = linear_gnh("squared_error", module, inputs.x_train, weight_decay)
    ref = dense_reference(inputs, g, inputs.damping)
    est = get_estimator(strategy)(inputs)
    close(est.param_response, ref["delta"])
    close(est.predicted_change, ref["change"])
    close(est.self_influence, ref["self"])
    assert est.info["kronfluence_damping"] == pytest.approx(inputs.damping + weight_decay)


def test_kfac_on_a_softmax_layer_is_the_activation_moment_kron_the_mean_output_hessian():
    """K-FAC for one linear layer: (1/N Σ x̃x̃ᵀ) ⊗ (1/N Σ H_i), the multi-output S scaled right."""
    w = 0.02
    inputs, module = linear_inputs("cross_entropy", w)
    x = inputs.x_train.numpy()
    xt = np.hstack([x, np.ones((x.shape[0], 1))])
    y = x @ module.weight.detach().numpy().T + module.bias.detach().numpy()
    a = xt.T @ xt / x.shape[0]
    s = output_hessians("cross_entropy", y).mean(0)
    out, d_in = module.weight.shape
    # Row-major [W | b] (out, d_in + 1) → flat [W row-major, b].
    perm = np.array(
        [o * d_in + j if j < d_in else out * d_in + o for o in range(out) for j in range(d_in + 1)]
    )
    f = np.zeros((perm.size, perm.size))
    f[np.ix_(perm, perm)] = np.kron(s, a)
    ref = dense_reference(inputs, f + w * np.eye(perm.size), inputs.damping)
    close(get_estimator("kfac")(inputs).param_response, ref["delta"])


def test_ekfac_eigenvalues_are_the_exact_gnh_diagonal_in_the_kronecker_eigenbasis():
    """Tanh MLP with softmax outputs: in each layer's basis q_S,a q_A,bᵀ the preconditioner
    scales by 1/(e_abᵀ G e_ab + λ) exactly (George et al.'s corrected eigenvalues)."""
    model = build_model(
        "mlp", input_shape=(5,), output_dim=3, seed=0, width=6, depth=1, activation="tanh"
    )
    model = model.to(DTYPE)
    problem = Problem.from_module(model, get_loss("cross_entropy"), 0.03)
    theta = flat_params(model)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(28, 5, generator=g, dtype=DTYPE)
    t = torch.randint(0, 3, (28,), generator=g)
    inputs = make_inputs(
        problem, theta, x, t, n_train=24, removed=torch.tensor([[0]]), damping=0.01, module=model
    )
    settings = get_estimator("ekfac").settings(batch_size=7)  # several batches per pass
    pre = fit_preconditioner(inputs, "ekfac", settings)
    gnh = dense_gnh(problem, theta, inputs.x_train, inputs.t_train)
    from kronfluence.module.tracked_module import TrackedModule
    from kronfluence.utils.constants import (
        ACTIVATION_EIGENVECTORS_NAME,
        GRADIENT_EIGENVECTORS_NAME,
    )

    storage = {m.name: m.storage for m in pre.model.modules() if isinstance(m, TrackedModule)}
    assert set(storage) == set(pre.blocks) == {"0.net.0", "0.net.2"}
    for name, (w_sl, b_sl, (o, i)) in pre.blocks.items():
        q_a = storage[name][ACTIVATION_EIGENVECTORS_NAME]  # (i + 1, i + 1)
        q_s = storage[name][GRADIENT_EIGENVECTORS_NAME]  # (o, o)
        mats = torch.einsum("pa,qb->abpq", q_s, q_a).reshape(o * (i + 1), o, i + 1)
        basis = torch.zeros(mats.shape[0], theta.numel(), dtype=DTYPE)
        basis[:, w_sl] = mats[..., :i].reshape(mats.shape[0], -1)
        basis[:, b_sl] = mats[..., i]
        expected = basis / ((basis @ gnh * basis).sum(1, keepdim=True) + inputs.damping)
        close(pre.apply(basis), expected.numpy())


@pytest.mark.parametrize("strategy", ["kfac", "ekfac"])
def test_sampled_true_fisher_converges_to_the_exact_gnh(strategy):
    inputs, module = linear_inputs("squared_error", 0.0)
    g = linear_gnh("squared_error", module, inputs.x_train, 0.0)
    ref = dense_reference(inputs, g, inputs.damping)["delta"]
    settings = get_estimator(strategy).settings(fisher="sampled", samples=400, seed=0)
    est = get_estimator(strategy)(inputs, settings).param_response.numpy()
    assert np.linalg.norm(est - ref) / np.linalg.norm(ref) < SAMPLED_RTOL


def test_a_module_that_does_not_compute_the_problem_is_refused():
    inputs, module = linear_inputs("squared_error", 0.0)
    renamed = make_inputs(
        Problem.from_module(torch.nn.Sequential(module), get_loss("squared_error")),
        inputs.theta,
        torch.cat([inputs.x_train, inputs.x_test]),
        torch.cat([inputs.t_train, inputs.t_test]),
        n_train=inputs.n_train,
        removed=inputs.removed,
        damping=0.01,
        module=module,  # parameters "weight", "bias" vs the problem's "0.weight", "0.bias"
    )
    with pytest.raises(ValueError, match="do not match"):
        get_estimator("kfac")(renamed)
    squashed = torch.nn.Sequential(module, torch.nn.Tanh())  # same names, another function
    wrong_f = make_inputs(
        Problem.from_module(torch.nn.Sequential(module), get_loss("squared_error")),
        inputs.theta,
        torch.cat([inputs.x_train, inputs.x_test]),
        torch.cat([inputs.t_train, inputs.t_test]),
        n_train=inputs.n_train,
        removed=inputs.removed,
        damping=0.01,
        module=squashed,
    )
    with pytest.raises(ValueError, match="does not compute"):
        get_estimator("kfac")(wrong_f)
