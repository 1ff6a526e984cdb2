"""Non-convergence is reported, never hidden: each kind reaches the node's manifest, the
aggregate tables and the report's warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_fixtures import run_study, smoke_config

from pbrf.study.presets import load_preset
from tasks import schemas
from tasks.engine import artifacts
from tasks.reports.results import Results

pytestmark = pytest.mark.slow  # a smoke study per test


def _manifest(root: Path, node: str) -> dict:
    return json.loads((root / ".pbrf" / "nodes" / f"{node}.json").read_text())


def test_lbfgs_stopped_by_its_iteration_cap_is_a_warning(tmp_path: Path) -> None:
    cfg = load_preset(
        "cancer-lr",
        {"train.epochs": 3, "retrain.variants": ["warm", "pbrf"]},
        "smoke",
    )
    run_study(tmp_path, cfg)
    assert any(
        "L-BFGS stopped after 3 iterations" in w
        for w in _manifest(tmp_path, "train_base")["warnings"]
    )
    warm = artifacts.read_table(
        tmp_path / "retrain/warm/shard-0/removals.parquet",
        schemas.VARIANT_REMOVALS,
        step="retrain",
        stamp=None,
    )
    assert not warm["converged"].astype(bool).all()
    res = Results.read(tmp_path, cfg)
    assert any("L-BFGS unconverged" in w for w in res.warnings())
    assert "L-BFGS unconverged" in (tmp_path / "report/report.md").read_text()


def test_cg_above_its_tolerance_is_a_warning(tmp_path: Path) -> None:
    cfg = smoke_config(
        influence__solver={"name": "cg", "max_iter": 2, "tol": 1e-10},
        retrain__pbrf__horizon="explicit",
        retrain__variants=["warm"],
    )
    run_study(tmp_path, cfg)
    solver = artifacts.read_table(
        tmp_path / "influence/solver.parquet", schemas.SOLVER, step="influence", stamp=None
    ).iloc[0]
    assert not solver["converged"] and solver["max_residual"] > 1e-10
    assert any(w.startswith("influence:") for w in _manifest(tmp_path, "influence")["warnings"])
    assert any(w.startswith("solver:") for w in Results.read(tmp_path, cfg).warnings())


def test_exact_solve_that_falls_back_from_cholesky_is_a_warning(tmp_path: Path) -> None:
    """The true Hessian of a barely trained MLP is indefinite: with a tiny damping the dense
    solve cannot use Cholesky and says so."""
    cfg = smoke_config(
        influence__solver={"name": "exact", "method": "primal"},
        influence__curvature="hessian",
        damping=1e-8,
        retrain__pbrf__horizon="explicit",
        retrain__variants=["warm"],
    )
    run_study(tmp_path, cfg)
    solver = artifacts.read_table(
        tmp_path / "influence/solver.parquet", schemas.SOLVER, step="influence", stamp=None
    ).iloc[0]
    assert not solver["converged"]
    assert "Cholesky" in solver["warnings"] or "LU" in solver["warnings"], solver["warnings"]
    report = (tmp_path / "report/report.md").read_text()
    assert "## Warnings" in report and "solver:" in report


def test_a_pbrf_still_falling_is_a_warning(tmp_path: Path) -> None:
    short = smoke_config(
        retrain__pbrf__horizon="explicit", retrain__pbrf__epochs=3, retrain__variants=["pbrf"]
    )
    run_study(tmp_path / "short", short)
    res = Results.read(tmp_path / "short", short)
    row = res.convergence.set_index("source").loc["pbrf"]
    assert row["still_decreasing"] > 0 and "still falling" in row["message"]
    assert any(w.startswith("pbrf:") for w in res.warnings())
