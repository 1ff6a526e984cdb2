"""iHVP solvers against an exact dense solve (GUIDE §5.2)."""

from __future__ import annotations

import itertools

import pytest
import torch
from tiny_problems import DTYPE, random_spd, tiny_problem

from pbrf.curvature import curvature_matvec, dense_gnh, sampled_matvec
from pbrf.solvers import (
    LissaDivergenceError,
    conjugate_gradient,
    exact_solve,
    lissa,
    top_eigenvalue,
)

CG_RTOL = 1e-4  # the bound; CG reaches far below it
LISSA_RTOL = 1e-3
D = 40


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _rhs(d: int, k: int = 5, seed: int = 3) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


@pytest.fixture(scope="module")
def spd():
    """Well-posed case (a): random SPD matrix, condition number 1000 (with damping 0)."""
    return random_spd(D, 1000.0)


def test_exact_solve_matches_linalg(spd):
    v = _rhs(D)
    x = exact_solve(spd, v, damping=0.5)
    torch.testing.assert_close(
        (spd + 0.5 * torch.eye(D, dtype=DTYPE)) @ x.T, v.T, rtol=1e-10, atol=1e-10
    )
    # matvec form materializes the same operator
    torch.testing.assert_close(
        exact_solve(lambda m: m @ spd, v, damping=0.5), x, rtol=1e-10, atol=1e-12
    )


def test_cg_matches_exact_on_random_spd(spd):
    v = _rhs(D)
    res = conjugate_gradient(lambda m: m @ spd, v, damping=0.0, max_iter=500, tol=1e-10)
    assert res.converged.all()
    assert rel_err(res.x, exact_solve(spd, v)) <= CG_RTOL


def test_lissa_matches_exact_on_random_spd(spd):
    v = _rhs(D)
    exact = exact_solve(spd, v)
    # σ > λ_max = 1000, contraction 1 − 1/σ per step on the smallest eigenvalue: T = 20000 → e^-18
    res = lissa(lambda m: m @ spd, v, depth=20000, scale=1100.0, damping=0.0)
    assert rel_err(res.x, exact) <= LISSA_RTOL
    assert res.horizon == pytest.approx(20000 / 1100.0)


def test_lissa_error_shrinks_with_depth(spd):
    v = _rhs(D, k=2)
    exact = exact_solve(spd, v, damping=1.0)
    errors = [
        rel_err(lissa(lambda m: m @ spd, v, depth=T, scale=1100.0, damping=1.0).x, exact)
        for T in (10, 100, 1000, 10000)
    ]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-3 < errors[0]


@pytest.fixture(scope="module")
def tiny_gnh():
    """Well-posed case (b): the explicit damped GNH of a tiny MLP."""
    problem, theta, x, t = tiny_problem("cross_entropy", n=30, weight_decay=0.0)
    return problem, theta, x, t, dense_gnh(problem, theta, x, t)


def test_solvers_match_exact_on_tiny_mlp_gnh(tiny_gnh):
    problem, theta, x, t, dense = tiny_gnh
    damping = 1e-2
    v = _rhs(theta.numel(), k=4)
    exact = exact_solve(dense, v, damping=damping)
    matvec = curvature_matvec(problem, theta, x, t)
    cg = conjugate_gradient(matvec, v, damping=damping, max_iter=2000, tol=1e-12)
    assert rel_err(cg.x, exact) <= CG_RTOL
    eig = float(torch.linalg.eigvalsh(dense).max())
    # contraction (1 − λ/σ) per step: σ/λ · ln(1e5) steps suffice
    res = lissa(
        matvec,
        v,
        depth=int(1.2 * (eig + damping) / damping * 12),
        scale="auto",
        damping=damping,
        scale_factor=1.2,
    )
    assert rel_err(res.x, exact) <= LISSA_RTOL
    assert res.top_eigenvalue == pytest.approx(eig, rel=1e-3)


def test_many_right_hand_sides_equal_one_at_a_time(spd):
    v = _rhs(D, k=3)
    mv = lambda m: m @ spd  # noqa: E731
    batched = lissa(mv, v, depth=50, scale=1100.0, damping=1.0).x
    single = torch.stack([lissa(mv, v[i], depth=50, scale=1100.0, damping=1.0).x for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-14)
    batched = conjugate_gradient(mv, v, damping=1.0, max_iter=200, tol=1e-12).x
    single = torch.stack(
        [conjugate_gradient(mv, v[i], damping=1.0, max_iter=200, tol=1e-12).x for i in range(3)]
    )
    torch.testing.assert_close(batched, single, rtol=1e-8, atol=1e-10)


def test_lissa_repeats_average_stochastic_estimates(tiny_gnh):
    problem, theta, x, t, dense = tiny_gnh
    damping = 0.1
    v = _rhs(theta.numel(), k=2)
    exact = exact_solve(dense, v, damping=damping)
    eig = float(torch.linalg.eigvalsh(dense).max())
    errs = []
    for repeats in (1, 8):
        gen = torch.Generator().manual_seed(0)
        mv = sampled_matvec(problem, theta, x, t, 10, gen)
        errs.append(
            rel_err(
                lissa(
                    mv, v, depth=150, scale=3 * (eig + damping), damping=damping, repeats=repeats
                ).x,
                exact,
            )
        )
    assert errs[1] < errs[0]


def test_lissa_divergence_names_scale_and_eigenvalue(spd):
    v = _rhs(D, k=1)
    with pytest.raises(
        LissaDivergenceError,
        match=r"scale σ=100 .*top-eigenvalue estimate .*not estimated.*increase influence\.scale",
    ):
        lissa(lambda m: m @ spd, v, depth=500, scale=100.0, damping=0.1)
    # scale='auto' whose eigenvalue estimate (from eigen_matvec) understates the solver's matvec
    with pytest.raises(
        LissaDivergenceError,
        match=r"top-eigenvalue estimate of the curvature is 1\b.*raise influence\.scale_factor",
    ):
        lissa(lambda m: m @ spd, v, depth=500, scale="auto", damping=0.1, eigen_matvec=lambda m: m)


def test_lissa_detects_nan():
    v = torch.ones(1, 3, dtype=DTYPE)
    with pytest.raises(LissaDivergenceError, match="diverged at step 1"):
        lissa(lambda m: m * float("nan"), v, depth=10, scale=1.0, damping=0.1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"depth": 0, "scale": 1.0, "damping": 0.1}, "depth"),
        ({"depth": 5, "scale": 0.0, "damping": 0.1}, "scale"),
        ({"depth": 5, "scale": -2.0, "damping": 0.1}, "scale"),
        ({"depth": 5, "scale": "big", "damping": 0.1}, "scale"),
        ({"depth": 5, "scale": 1.0, "damping": -0.1}, "damping"),
        ({"depth": 5, "scale": 1.0, "damping": 0.1, "repeats": 0}, "repeats"),
    ],
)
def test_lissa_validates_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        lissa(lambda m: m, torch.ones(2, dtype=DTYPE), **kwargs)


def test_cg_validates_and_rejects_indefinite_operators():
    with pytest.raises(ValueError, match="damping"):
        conjugate_gradient(lambda m: m, torch.ones(2, dtype=DTYPE), damping=-1.0)
    with pytest.raises(ValueError, match="not positive definite"):
        conjugate_gradient(lambda m: -m, torch.ones(1, 2, dtype=DTYPE), damping=0.0)


def test_power_iteration_finds_top_eigenvalue(spd):
    eig = top_eigenvalue(lambda m: m @ spd, D, iters=500, tol=1e-10, dtype=DTYPE)
    assert eig == pytest.approx(float(torch.linalg.eigvalsh(spd).max()), rel=1e-3)
