"""iHVP solvers and their settings, each checked against an independent dense float64 solve
(SciPy/NumPy on explicit matrices), never against another path of the same code."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest
import scipy.linalg
import torch
from pydantic import ValidationError
from tiny_problems import DTYPE, random_spd, tiny_problem

from pbrf.curvature import LinearizedGNH, dense_gnh, sampled_matvec
from pbrf.solvers import (
    SCALE_GRID,
    SOLVER_SETTINGS,
    CGSettings,
    ExactSettings,
    LissaDivergenceError,
    LissaGridDivergenceError,
    LissaSettings,
    NotPositiveDefiniteError,
    conjugate_gradient,
    dense_solve,
    dual_solve,
    exact_solve,
    lissa,
    lissa_grid,
    power_iteration,
    top_eigenvalue,
)

D = 40
# Direct float64 solves are backward stable: error ≲ cond · eps ≈ 1e3 · 2e-16 here; 1e-10 leaves
# two orders of margin and still fails on any algebraic mistake (those show up at ≥ 1e-3).
DIRECT_RTOL = 1e-10
# CG is run to tol 1e-12 (relative residual); the error is ≤ cond · residual ≈ 1e3 · 1e-12.
CG_RTOL = 1e-8
# LiSSA is a truncated series: depths below are chosen so the slowest mode has decayed by
# e^-12 or more (≈ 6e-6); 1e-4 allows for that plus the averaging of many steps.
LISSA_RTOL = 1e-4
# Power iteration stops at a relative change of 1e-12 in the Rayleigh quotient; the top two
# eigenvalues are well separated here, so the estimate is this close to eigvalsh's.
EIG_RTOL = 1e-6


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _rhs(d: int, k: int = 5, seed: int = 3) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def scipy_solve(matrix: torch.Tensor, v: torch.Tensor, damping: float, **kw) -> torch.Tensor:
    """The independent reference: SciPy's LAPACK solve of (A + λI) X = Vᵀ, in float64."""
    a = matrix.numpy() + damping * np.eye(matrix.shape[0])
    return torch.from_numpy(scipy.linalg.solve(a, v.numpy().T, **kw).T)


@pytest.fixture(scope="module")
def spd():
    """Random SPD matrix with eigenvalues log-spaced in [1, 1000]."""
    return random_spd(D, 1000.0)


@pytest.fixture(scope="module")
def tiny_gnh():
    """The explicit GNH of a tiny MLP (built with jacrev by dense_gnh) and its linearized form."""
    problem, theta, x, t = tiny_problem("cross_entropy", n=30, weight_decay=0.0)
    return LinearizedGNH(problem, theta, x, t), dense_gnh(problem, theta, x, t), problem, theta


# --- settings ------------------------------------------------------------------------------


def test_settings_validate_from_mappings_and_round_trip():
    cg = SOLVER_SETTINGS.validate_python({"name": "cg", "tol": 1e-10})
    assert isinstance(cg, CGSettings) and cg.tol == 1e-10 and cg.max_iter == 1000
    assert isinstance(SOLVER_SETTINGS.validate_python({"name": "exact"}), ExactSettings)
    for settings in (
        LissaSettings(),
        LissaSettings(scale=2.0, depth=10),
        LissaSettings(batch_size=16, repeats=3, seed=4),
        LissaSettings(scale="grid", scale_grid=(50.0, 5.0)),
        CGSettings(max_iter=5),
        ExactSettings(method="dual"),
    ):
        assert SOLVER_SETTINGS.validate_python(settings.model_dump()) == settings
        assert SOLVER_SETTINGS.validate_json(settings.model_dump_json()) == settings
    with pytest.raises(ValidationError):  # frozen
        CGSettings().tol = 1.0  # type: ignore[misc]
    for cls in (LissaSettings, CGSettings, ExactSettings):
        assert all(f.description for f in cls.model_fields.values()), cls
    assert LissaSettings().model_dump() == {
        "name": "lissa",
        "depth": 5000,
        "scale": "auto",
        "scale_grid": SCALE_GRID,
        "scale_factor": 1.5,
        "repeats": 1,
        "batch_size": None,
        "power_iters": 30,
        "seed": 0,
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "lissa", "depth": 0}, "depth"),
        ({"name": "lissa", "depth": True}, "depth"),
        ({"name": "lissa", "scale": 0.0}, "scale"),
        ({"name": "lissa", "scale": -2.0}, "scale"),
        ({"name": "lissa", "scale": math.nan}, "scale"),
        ({"name": "lissa", "scale": math.inf}, "scale"),
        ({"name": "lissa", "scale": "big"}, "scale"),
        ({"name": "lissa", "scale_factor": 1.0}, "scale_factor"),
        ({"name": "lissa", "scale_factor": math.inf}, "scale_factor"),
        ({"name": "lissa", "repeats": 0}, "repeats"),
        ({"name": "lissa", "batch_size": 0}, "batch_size"),
        ({"name": "lissa", "power_iters": 0}, "power_iters"),
        ({"name": "lissa", "seed": -1}, "seed"),
        # values that would be silently ignored
        ({"name": "lissa", "repeats": 3}, "repeats"),
        ({"name": "lissa", "seed": 7}, "seed"),
        ({"name": "lissa", "scale": 2.0, "scale_factor": 3.0}, "scale_factor"),
        ({"name": "lissa", "scale": 2.0, "power_iters": 5}, "power_iters"),
        ({"name": "lissa", "scale": "grid", "scale_factor": 3.0}, "scale_factor"),
        ({"name": "lissa", "scale_grid": [1.0, 2.0]}, "scale_grid"),
        ({"name": "lissa", "scale": "grid", "scale_grid": []}, "scale_grid"),
        ({"name": "lissa", "scale": "grid", "scale_grid": [1.0, -2.0]}, "scale_grid"),
        ({"name": "lissa", "scale": "grid", "scale_grid": [1.0, 1.0]}, "scale_grid"),
        ({"name": "lissa", "cg_tol": 1e-3}, "cg_tol"),
        ({"name": "cg", "max_iter": 0}, "max_iter"),
        ({"name": "cg", "tol": 0.0}, "tol"),
        ({"name": "cg", "tol": 1.0}, "tol"),
        ({"name": "cg", "tol": math.nan}, "tol"),
        ({"name": "cg", "depth": 10}, "depth"),
        ({"name": "exact", "method": "svd"}, "method"),
        ({"name": "newton"}, "newton"),
    ],
)
def test_settings_reject_bad_values_naming_the_field(data, field):
    with pytest.raises(ValidationError, match=field):
        SOLVER_SETTINGS.validate_python(data)


# --- direct solves ---------------------------------------------------------------------------


def test_dense_solve_matches_scipy_on_random_spd(spd):
    v = _rhs(D)
    ref = scipy_solve(spd, v, 0.5, assume_a="pos")
    res = dense_solve(spd, v, damping=0.5)
    assert res.factorization == "cholesky" and res.converged and res.warnings == ()
    assert rel_err(res.x, ref) <= DIRECT_RTOL
    # the builder form factors in place and gives the same answer; the input is untouched
    copy = spd.clone()
    built = dense_solve(lambda: spd.clone(), v, damping=0.5, matvec=lambda m: m @ spd)
    assert rel_err(built.x, ref) <= DIRECT_RTOL and torch.equal(spd, copy)
    # the recorded residual ‖v − (A + λI)x‖/‖v‖ is at round-off level (a residual that forgot
    # λ or used the factor instead of A would be ≥ 1e-3)
    assert (res.residual <= 1e-13).all()
    # the tensor-returning convenience and its matvec form
    assert rel_err(exact_solve(spd, v, damping=0.5), ref) <= DIRECT_RTOL
    assert rel_err(exact_solve(lambda m: m @ spd, v, damping=0.5), ref) <= DIRECT_RTOL


def test_dense_solve_falls_back_to_lu_then_least_squares():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=DTYPE))
    indefinite = (q * torch.tensor([3.0, 2.0, 1.0, -1.0, -2.0, 0.5], dtype=DTYPE)) @ q.T
    v = _rhs(6, k=2)
    calls = []

    def build() -> torch.Tensor:
        calls.append(1)
        return indefinite.clone()

    res = dense_solve(build, v, damping=0.1, matvec=lambda m: m @ indefinite)
    assert res.factorization == "lu" and len(calls) == 2  # built again for the fallback
    assert len(res.warnings) == 1 and "Cholesky failed" in res.warnings[0]
    assert "LU" in res.warnings[0]
    assert res.converged  # a nonsingular indefinite system is still solved exactly
    assert rel_err(res.x, scipy_solve(indefinite, v, 0.1)) <= DIRECT_RTOL
    # singular: eigenvalue −0.1 shifted by λ = 0.1 → LU meets a zero pivot (exactly, in a
    # diagonal matrix) → minimum-norm least squares, reported as not converged
    singular = torch.diag(torch.tensor([1.0, -0.1, 2.0], dtype=DTYPE))
    rhs = torch.tensor([[1.0, 1.0, 1.0]], dtype=DTYPE)
    res = dense_solve(singular, rhs, damping=0.1)
    assert res.factorization == "lstsq" and not res.converged
    assert "singular" in res.warnings[0]
    pinv = np.linalg.pinv(singular.numpy() + 0.1 * np.eye(3))
    np.testing.assert_allclose(res.x.numpy(), rhs.numpy() @ pinv.T, rtol=1e-12)


def _factor_problem(m: int = 12, d: int = 30, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, d, generator=g, dtype=DTYPE)
    return a, (lambda v: v @ a.T), (lambda u: u @ a)


@pytest.mark.parametrize("weight_decay", [0.0, 0.2])
def test_dual_solve_equals_scipy_on_the_primal_matrix(weight_decay):
    a, factor, factor_t = _factor_problem()
    n, damping = 7, 1e-3
    v = _rhs(a.shape[1], k=4)
    primal = a.T @ a / n + weight_decay * torch.eye(a.shape[1], dtype=DTYPE)
    ref = scipy_solve(primal, v, damping, assume_a="pos")
    res = dual_solve(a @ a.T, factor, factor_t, v, n=n, damping=damping, weight_decay=weight_decay)
    assert res.method == "dual" and res.factorization == "cholesky" and res.converged
    # μ = 1e-3 against ‖AᵀA/n‖ ≈ 10: the Woodbury formula cancels ~4 digits, refinement restores
    assert rel_err(res.x, ref) <= DIRECT_RTOL
    # evaluating the residual itself cancels: eps · ‖G‖ · ‖x‖/‖v‖ ≈ 2e-16 · 10 · 1e3 ≈ 2e-12
    assert float(res.residual.max()) <= 1e-11 and res.refinements == 1


def test_dual_solve_falls_back_and_rejects_zero_shift():
    a, factor, factor_t = _factor_problem(m=5, d=9)
    v = _rhs(9, k=2)
    kernel = -(a @ a.T)  # not a Gram matrix: nμI + K is indefinite, Cholesky must fail
    res = dual_solve(kernel, factor, factor_t, v, n=1, damping=1.0, refine=0)
    assert res.factorization == "lu" and "Cholesky failed" in res.warnings[0]
    # the Woodbury formula evaluated with NumPy's general solve
    inner = np.linalg.solve(np.eye(5) + kernel.numpy(), a.numpy() @ v.numpy().T)
    np.testing.assert_allclose(res.x.numpy(), v.numpy() - (a.numpy().T @ inner).T, rtol=1e-10)
    with pytest.raises(ValueError, match="weight_decay \\+ damping > 0"):
        dual_solve(a @ a.T, factor, factor_t, v, n=1, damping=0.0)


# --- conjugate gradients -------------------------------------------------------------------


def test_cg_matches_scipy_on_random_spd(spd):
    v = _rhs(D)
    res = conjugate_gradient(lambda m: m @ spd, v, damping=0.0, max_iter=500, tol=1e-12)
    assert res.converged and res.warnings == ()
    assert (res.residual <= 1e-12).all() and (res.iterations > 0).all()
    assert rel_err(res.x, scipy_solve(spd, v, 0.0, assume_a="pos")) <= CG_RTOL


def test_cg_with_too_few_iterations_says_so(spd):
    v = _rhs(D, k=3)
    res = conjugate_gradient(lambda m: m @ spd, v, damping=0.0, max_iter=5, tol=1e-10)
    assert not res.converged
    assert res.iterations.tolist() == [5, 5, 5]
    # residuals recomputed independently from the returned x
    expected = (v - res.x @ spd).norm(dim=-1) / v.norm(dim=-1)
    torch.testing.assert_close(res.residual, expected, rtol=1e-10, atol=0.0)
    assert float(expected.min()) > 1e-10
    (message,) = res.warnings
    assert f"{float(expected.max()):.3g}" in message and "max_iter=5" in message
    assert "3 of 3" in message


def test_cg_stops_when_the_dtype_cannot_reach_the_tolerance():
    """float32 with cond 1e4 cannot reach a 1e-10 residual: CG says so instead of spinning."""
    a = random_spd(D, 1e4).float()
    v = _rhs(D, k=3).float()
    res = conjugate_gradient(lambda m: m @ a, v, max_iter=5000, tol=1e-10)
    assert not res.converged and res.restarts >= 1
    assert int(res.iterations.max()) < 5000 and "stagnated" in res.warnings[0]
    # genuinely unconverged: the float64 residual of the returned x is far above tol
    true = (v.double() - res.x.double() @ a.double().T).norm(dim=-1) / v.double().norm(dim=-1)
    assert float(true.min()) > 1e-7 and (res.residual > 1e-10).all()


def test_cg_raises_typed_error_on_an_indefinite_operator():
    a = torch.diag(torch.tensor([1.0, -2.0], dtype=DTYPE))
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=DTYPE)
    with pytest.raises(NotPositiveDefiniteError) as info:
        conjugate_gradient(lambda m: m @ a, v, damping=0.5)
    err = info.value
    # the first search direction is v itself: e₂ᵀ(A + λI)e₂ = −2 + 0.5
    assert err.curvature == pytest.approx(-1.5) and err.damping == 0.5
    assert err.iteration == 1 and err.rhs == (1,)
    assert "-1.5" in str(err) and "0.5" in str(err)
    assert isinstance(err, ValueError)


def test_cg_validates_arguments():
    ones = torch.ones(2, dtype=DTYPE)
    for kwargs, field in [
        ({"damping": -1.0}, "damping"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": 0.0}, "tol"),
        ({"tol": 2.0}, "tol"),
    ]:
        with pytest.raises(ValueError, match=field):
            conjugate_gradient(lambda m: m, ones, **kwargs)


# --- LiSSA ---------------------------------------------------------------------------------


def test_lissa_matches_scipy_on_random_spd(spd):
    v = _rhs(D)
    # σ > λ_max = 1000; the slowest mode contracts by (1 − 1/σ) per step: T = 20000 → e^-18
    res = lissa(lambda m: m @ spd, v, depth=20000, scale=1100.0, damping=0.0)
    assert rel_err(res.x, scipy_solve(spd, v, 0.0, assume_a="pos")) <= LISSA_RTOL
    assert res.horizon == pytest.approx(20000 / 1100.0) and res.converged


def test_lissa_error_shrinks_with_depth(spd):
    v = _rhs(D, k=2)
    ref = scipy_solve(spd, v, 1.0, assume_a="pos")
    errors = [
        rel_err(lissa(lambda m: m @ spd, v, depth=T, scale=1100.0, damping=1.0).x, ref)
        for T in (10, 100, 1000, 10000)
    ]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-3 < errors[0]


@pytest.mark.slow
def test_solvers_match_scipy_on_tiny_mlp_gnh(tiny_gnh):
    op, dense, _, theta = tiny_gnh
    damping = 1e-2
    v = _rhs(theta.numel(), k=4)
    ref = scipy_solve(dense, v, damping, assume_a="pos")
    cg = conjugate_gradient(op, v, damping=damping, max_iter=2000, tol=1e-12)
    assert cg.converged
    # cond(G + λI) ≈ 1e2 here, so residual 1e-12 bounds the error by 1e-10
    assert rel_err(cg.x, ref) <= CG_RTOL
    eig = float(torch.linalg.eigvalsh(dense).max())
    # contraction (1 − λ/σ) per step: σ/λ · 14 steps reach e^-14
    res = lissa(
        op, v, depth=int(1.2 * (eig + damping) / damping * 14), scale="auto", damping=damping,
        scale_factor=1.2, power_iters=200,
    )  # fmt: skip
    assert rel_err(res.x, ref) <= LISSA_RTOL
    assert res.top_eigenvalue == pytest.approx(eig, rel=1e-3) and res.eigen is not None
    # the direct solves: Cholesky of the dense G, and the dual through the factor's kernel
    assert rel_err(dense_solve(op.gram(), v, damping=damping).x, ref) <= DIRECT_RTOL
    dual = dual_solve(op.kernel(), op.factor, op.factor_t, v, n=op.n, damping=damping)
    assert rel_err(dual.x, ref) <= DIRECT_RTOL


def test_many_right_hand_sides_equal_one_at_a_time(spd):
    v = _rhs(D, k=3)
    mv = lambda m: m @ spd  # noqa: E731
    batched = lissa(mv, v, depth=50, scale=1100.0, damping=1.0).x
    single = torch.stack([lissa(mv, v[i], depth=50, scale=1100.0, damping=1.0).x for i in range(3)])
    # identical recursions; only the GEMM shapes differ (summation order, ~eps)
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-14)
    batched = conjugate_gradient(mv, v, damping=1.0, max_iter=200, tol=1e-12).x
    single = torch.stack(
        [conjugate_gradient(mv, v[i], damping=1.0, max_iter=200, tol=1e-12).x for i in range(3)]
    )
    # each row stops on its own residual ≤ 1e-12; cond ≤ 1e3 bounds the difference by ~1e-9
    torch.testing.assert_close(batched, single, rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_lissa_repeats_average_stochastic_estimates(tiny_gnh):
    _, dense, problem, theta = tiny_gnh
    _, _, x, t = tiny_problem("cross_entropy", n=30, weight_decay=0.0)
    damping = 0.1
    v = _rhs(theta.numel(), k=2)
    ref = scipy_solve(dense, v, damping, assume_a="pos")
    eig = float(torch.linalg.eigvalsh(dense).max())
    errs = []
    for repeats in (1, 8):
        mv = sampled_matvec(problem, theta, x, t, 10, torch.Generator().manual_seed(0))
        res = lissa(mv, v, depth=150, scale=3 * (eig + damping), damping=damping, repeats=repeats)
        errs.append(rel_err(res.x, ref))
    assert errs[1] < errs[0]


def _first_blow_up(a: np.ndarray, v: np.ndarray, sigma: float, lam: float, slack: float) -> int:
    """Independent NumPy replay of Eq. 51's recursion: the first step whose ‖h_t‖/‖v‖ exceeds
    slack · min(t + 1, σ/λ)."""
    h = v.copy()
    for step in itertools.count(1):
        h = v + (1 - lam / sigma) * h - (h @ a) / sigma
        if np.linalg.norm(h) / np.linalg.norm(v) > slack * min(step + 1, sigma / lam):
            return step
    raise AssertionError  # pragma: no cover


def test_lissa_divergence_raises_typed_error_with_its_values(spd):
    v = _rhs(D, k=1)
    with pytest.raises(LissaDivergenceError) as info:
        lissa(lambda m: m @ spd, v, depth=500, scale=100.0, damping=0.1)
    err = info.value
    step = _first_blow_up(spd.numpy(), v.numpy(), 100.0, 0.1, 4.0)
    assert (err.step, err.depth, err.repeat, err.rhs) == (step, 500, 0, (0,))
    assert (err.scale, err.damping, err.top_eigenvalue) == (100.0, 0.1, None)
    assert err.bound == 4.0 * min(step + 1, 100.0 / 0.1) and err.ratio > err.bound
    assert f"step {step} of 500" in str(err) and "σ = 100" in str(err)
    assert "influence." not in str(err)  # values, not pipeline keys
    # a λ_max passed in that understates the curvature: σ = 1.5 (1 + 0.1) is too small
    with pytest.raises(LissaDivergenceError) as info:
        lissa(lambda m: m @ spd, v, depth=500, scale="auto", damping=0.1, top_eigenvalue=1.0)
    err = info.value
    assert err.top_eigenvalue == 1.0 and err.scale == pytest.approx(1.5 * 1.1)
    assert "exceeds the estimate λ_max + λ = 1.1" in str(err)
    # attributes survive pickling (e.g. a worker process reporting the failure)
    again = pickle.loads(pickle.dumps(err))
    assert (again.step, again.scale, again.top_eigenvalue, str(again)) == (
        err.step,
        err.scale,
        err.top_eigenvalue,
        str(err),
    )


def test_lissa_grid_takes_the_smallest_bounded_scale_as_appendix_e3(spd):
    """The paper's procedure: σ below (λ_max + λ)/2 = 500.05 diverges (at the step an independent
    NumPy replay finds) and is passed over; the first σ above it is the result — the same
    vectors as LiSSA run at that σ alone, and SciPy's solve to the truncation tolerance."""
    v = _rhs(D, k=2)
    calls = []

    def make():
        calls.append(1)
        return lambda m: m @ spd

    res = lissa_grid(make, v, grid=(1200.0, 100.0, 600.0, 400.0), depth=8000, damping=0.1)
    assert res.scale == 600.0 and len(calls) == 3  # 100 and 400 diverged; 1200 never tried
    assert [t.scale for t in res.trials] == [100.0, 400.0, 600.0]
    for trial in res.trials[:2]:
        first = min(_first_blow_up(spd.numpy(), row, trial.scale, 0.1, 4.0) for row in v.numpy())
        assert (trial.step, trial.repeat) == (first, 0) and trial.ratio > 4.0
        assert f"diverged at step {first}" in trial.describe()
    assert res.trials[-1].step is None and "chosen" in res.trials[-1].describe()
    alone = lissa(lambda m: m @ spd, v, depth=8000, scale=600.0, damping=0.1)
    assert torch.equal(res.x, alone.x) and res.horizon == 8000 / 600
    assert rel_err(res.x, scipy_solve(spd, v, 0.1)) < LISSA_RTOL


def test_lissa_grid_diverging_everywhere_names_the_grid_and_pickles(spd):
    v = _rhs(D, k=1)
    with pytest.raises(LissaGridDivergenceError) as info:
        lissa_grid(lambda: lambda m: m @ spd, v, grid=(10.0, 100.0), depth=500, damping=0.1)
    err = info.value
    assert isinstance(err, LissaDivergenceError) and err.grid == (10.0, 100.0)
    assert err.scale == 100.0  # the values describe the largest σ
    assert "every scale of the grid {10, 100}" in str(err) and "scale_grid" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.grid, again.step, str(again)) == (err.grid, err.step, str(err))
    with pytest.raises(ValueError, match="grid"):
        lissa_grid(lambda: lambda m: m @ spd, v, grid=(), depth=5, damping=0.1)


def test_lissa_detects_nan():
    v = torch.ones(1, 3, dtype=DTYPE)
    with pytest.raises(LissaDivergenceError, match="diverged at step 1") as info:
        lissa(lambda m: m * float("nan"), v, depth=10, scale=1.0, damping=0.1)
    assert math.isnan(info.value.ratio)


def test_lissa_records_unconverged_power_iteration_and_a_small_fixed_scale(spd):
    v = _rhs(D, k=1)
    res = lissa(lambda m: m @ spd, v, depth=3, scale="auto", damping=0.1, power_iters=2)
    assert res.eigen is not None and not res.eigen.converged and res.eigen.iterations == 2
    assert not res.converged and "did not converge in 2" in res.warnings[0]
    # v along the eigenvalue-1 direction of diag(1, 1000): no blow-up yet, but σ = 10 is below
    # half the λ_max + λ it was told, so deeper recursions on other vectors would diverge
    a = torch.diag(torch.tensor([1.0, 1000.0], dtype=DTYPE))
    e1 = torch.tensor([[1.0, 0.0]], dtype=DTYPE)
    res = lissa(lambda m: m @ a, e1, depth=2, scale=10.0, damping=0.1, top_eigenvalue=1000.0)
    assert not res.converged and "σ = 10 ≤ (λ_max + λ)/2 = 500" in res.warnings[0]
    assert "diverges" in res.warnings[0]


def test_lissa_between_half_and_all_of_the_top_eigenvalue_converges_with_overshoot():
    """(λ_max + λ)/2 < σ ≤ λ_max + λ: the factor 1 − (λ_max + λ)/σ is in (−1, 0), so the series
    still converges, to the exact solve, with a warning naming the overshoot."""
    a = torch.diag(torch.tensor([1.0, 19.0], dtype=DTYPE))
    v = torch.tensor([[1.0, 1.0]], dtype=DTYPE)
    res = lissa(lambda m: m @ a, v, depth=400, scale=12.0, damping=0.1, top_eigenvalue=19.0)
    exact = torch.linalg.solve(a + 0.1 * torch.eye(2, dtype=DTYPE), v[0])
    torch.testing.assert_close(res.x[0], exact, rtol=1e-10, atol=1e-12)
    assert not res.converged and "σ = 12 ≤ λ_max + λ = 19.1" in res.warnings[0]
    assert "converges" in res.warnings[0] and "-0.592" in res.warnings[0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"depth": 0, "scale": 1.0, "damping": 0.1}, "depth"),
        ({"depth": 5, "scale": 0.0, "damping": 0.1}, "scale"),
        ({"depth": 5, "scale": -2.0, "damping": 0.1}, "scale"),
        ({"depth": 5, "scale": "big", "damping": 0.1}, "scale"),
        ({"depth": 5, "scale": 1.0, "damping": -0.1}, "damping"),
        ({"depth": 5, "scale": 1.0, "damping": 0.1, "repeats": 0}, "repeats"),
        ({"depth": 5, "scale": "auto", "damping": 0.1, "scale_factor": 1.0}, "scale_factor"),
    ],
)
def test_lissa_validates_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        lissa(lambda m: m, torch.ones(2, dtype=DTYPE), **kwargs)


# --- power iteration -------------------------------------------------------------------------


def test_power_iteration_finds_top_eigenvalue_and_reports_convergence(spd):
    top = float(np.linalg.eigvalsh(spd.numpy()).max())
    est = power_iteration(lambda m: m @ spd, D, iters=2000, tol=1e-12, dtype=DTYPE)
    assert est.converged and 1 < est.iterations < 2000
    assert est.value == pytest.approx(top, rel=EIG_RTOL)
    assert top_eigenvalue(lambda m: m @ spd, D, iters=2000, tol=1e-12, dtype=DTYPE) == est.value
    short = power_iteration(lambda m: m @ spd, D, iters=3, tol=1e-12, dtype=DTYPE)
    assert not short.converged and short.iterations == 3 and short.value < top
