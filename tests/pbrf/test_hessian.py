"""Influence with the true Hessian (Tables 4, 7): the algebraic λ_max of an indefinite operator,
LiSSA stopping with the damping it needs or converging to the dense solve when given it, and the
one-line errors that name ``damping`` and the LiSSA scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_problems import DTYPE, tiny_problem

from flows.cli import main
from flows.cli.errors import report_error
from pbrf.curvature import dense_hessian
from pbrf.influence import (
    algebraic_top_eigenvalue,
    inverse_curvature_product,
    removal_gradients,
)
from pbrf.responses import lissa_scale
from pbrf.solvers import (
    HessianDivergenceError,
    LissaDivergenceError,
    LissaSettings,
    NonPositiveScaleError,
    lissa,
)


def _symmetric(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(
        torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=DTYPE)
    )
    return (q * torch.tensor(eigenvalues, dtype=DTYPE)) @ q.T


def test_algebraic_top_of_an_indefinite_operator_is_its_largest_not_its_largest_magnitude():
    """Spectrum {−3, −1, 0.5, 1, 2}: plain power iteration finds −3; the shifted run finds 2.
    Ratios |−1|/3 and 4/5 make 500 iterations exact to ~1e-12 (tolerance 1e-8)."""
    a = _symmetric([-3.0, -1.0, 0.5, 1.0, 2.0])
    top, negative = algebraic_top_eigenvalue(lambda v: v @ a, 5, iters=500, tol=1e-14, dtype=DTYPE)
    assert negative == pytest.approx(-3.0, rel=1e-8)
    assert top.value == pytest.approx(2.0, rel=1e-8) and top.converged
    psd = _symmetric([0.1, 0.5, 1.0, 4.0, 5.0])
    top, negative = algebraic_top_eigenvalue(
        lambda v: v @ psd, 5, iters=500, tol=1e-14, dtype=DTYPE
    )
    assert negative is None and top.value == pytest.approx(5.0, rel=1e-8)


def _indefinite():
    """A tanh MLP at initialization: Hessian eigenvalues span about [−0.33, 0.71]."""
    problem, theta, x, t = tiny_problem(n=24)
    h = dense_hessian(problem, theta, x, t)
    eig = torch.linalg.eigvalsh(h)
    assert float(eig[0]) < -0.1 < 0.1 < float(eig[-1])  # the premise: indefinite
    rhs = removal_gradients(problem, theta, x[[1, 5, 9], None], t[[1, 5, 9], None])
    return problem, theta, x, t, h, eig, rhs


def test_lissa_on_an_indefinite_hessian_stops_naming_the_damping_that_converges():
    problem, theta, x, t, _, eig, rhs = _indefinite()
    settings = LissaSettings(depth=300, batch_size=None)
    with pytest.raises(HessianDivergenceError) as info:
        inverse_curvature_product(
            problem, theta, x, t, rhs, damping=1e-3, solver=settings, curvature="hessian"
        )
    exc = info.value
    assert isinstance(exc, LissaDivergenceError) and exc.damping == 1e-3
    # σ was set from the algebraic λ_max (power iteration, 30 steps: within 1e-3)
    assert exc.top_eigenvalue == pytest.approx(float(eig[-1]), rel=1e-3)
    # λ_min is a Rayleigh quotient: never below the true λ_min, and it must show the problem
    assert float(eig[0]) - 1e-9 <= exc.min_eigenvalue < -exc.damping
    assert f"damping λ > {-exc.min_eigenvalue:.3g}" in str(exc)
    assert "\n" not in str(exc)


@pytest.mark.slow
def test_lissa_on_the_hessian_converges_to_the_dense_solve_with_damping_above_its_bottom():
    """Damping 0.5 > |λ_min| ≈ 0.33: contraction ρ = max|1 − (h + λ)/σ| ≈ 0.91, so depth 300
    leaves ρ^300 ≈ 2e-13 of the start; the float64 result matches NumPy's solve to 1e-8."""
    problem, theta, x, t, h, _, rhs = _indefinite()
    damping = 0.5
    res = inverse_curvature_product(
        problem, theta, x, t, rhs, damping=damping,
        solver=LissaSettings(depth=300, batch_size=None), curvature="hessian",
    )  # fmt: skip
    expected = np.linalg.solve(h.numpy() + damping * np.eye(h.shape[0]), rhs.numpy().T).T
    assert res.converged and res.info["top_eigenvalue_source"] == "power_iteration"
    np.testing.assert_allclose(res.x.numpy(), expected, rtol=1e-8, atol=1e-10)


def test_a_non_positive_automatic_scale_is_a_typed_error():
    a = _symmetric([0.5, 1.0, 2.0])
    with pytest.raises(NonPositiveScaleError) as info:  # −A: every eigenvalue negative
        lissa(lambda v: -(v @ a), torch.ones(3, dtype=DTYPE), depth=5, scale="auto", damping=1e-3)
    assert isinstance(info.value, ValueError)
    assert info.value.top_eigenvalue == pytest.approx(-2.0, rel=1e-3)
    with pytest.raises(NonPositiveScaleError, match="not positive"):
        lissa_scale("auto", 1.5, 1e-3, -0.2)


def _divergence() -> HessianDivergenceError:
    return HessianDivergenceError(
        min_eigenvalue=-0.25, step=7, depth=300, repeat=0, ratio=50.0, bound=32.0, scale=1.1,
        damping=1e-3, top_eigenvalue=0.7, rhs=(0,),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "needles"),
    [
        (_divergence(), ("damping above 0.25", "influence.solver.scale", "curvature=gnh")),
        (
            NonPositiveScaleError(top_eigenvalue=-0.4, damping=1e-3, scale_factor=1.5),
            ("damping above 0.4", "influence.solver.scale", "curvature=gnh"),
        ),
    ],
)
def test_the_cli_turns_hessian_failures_into_one_line_naming_damping_and_scale(
    exc, needles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report_error(exc) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pbrf: error: ")
    for needle in needles:
        assert needle in lines[0], needle


@pytest.mark.slow
def test_a_smoke_hessian_study_stops_at_the_influence_step_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The smoke network (3 epochs) has a strongly indefinite Hessian: the curvature step records
    the algebraic λ_max (> 0), and influence stops with exit 1 and one line."""
    params, out = tmp_path / "params.yaml", tmp_path / "run"
    base = ["--params", str(params), "--out", str(out)]
    assert main(["params", "digits-mlp", "--scale", "smoke", "--set",
                 "influence.curvature=hessian", "-o", str(params)]) == 0  # fmt: skip
    for node in ("prepare", "train_base", "select", "spectrum"):
        assert main(["step", node, *base]) == 0, node
    capsys.readouterr()
    import pandas as pd

    assert float(pd.read_parquet(out / "spectrum/spectrum.parquet")["top_eigenvalue"][0]) > 0
    assert main(["step", "influence", *base]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Hessian" in lines[0] and "damping" in lines[0] and "influence.solver.scale" in lines[0]
